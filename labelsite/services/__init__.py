"""Writes of the labelling product: campaigns, items, assignment (leases) and judgments.

Every service is keyword-only and atomic; a failure a user can cause raises `LabelError` with a message
meant for that user.
"""

from __future__ import annotations


class LabelError(Exception):
    """Something the user can fix or should know; the message is shown as is."""
