"""Writes of the labelling product: campaigns, items, assignment (leases) and judgments.

Every service is keyword-only and atomic; a failure a user can cause raises `LabelError` (or one of its
subclasses, which carry the HTTP status the API answers with; see config.errors) with a message meant
for that user.
"""

from __future__ import annotations

from config.errors import Conflict, Forbidden, NotFound, ServiceError


class LabelError(ServiceError):
    """Something the user can fix or should know; the message is shown as is (400 in the API)."""


class LabelForbidden(LabelError, Forbidden):
    """The user is not part of this campaign (403)."""


class LabelNotFound(LabelError, NotFound):
    """No such campaign or item (404)."""


class LabelConflict(LabelError, Conflict):
    """The campaign's or item's state does not allow it now: closed, already judged, taken (409)."""
