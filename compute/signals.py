"""Signals other apps may listen to, so compute never imports them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent in the worker after a job's success is recorded; kwargs: job (the compute.models.Job).
job_succeeded = Signal()
