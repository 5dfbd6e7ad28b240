"""Errors a service raises for its caller to show: one class tree, one HTTP status per class.

Services raise these (or their app's subclasses: `labelsite.services.LabelError`, `compute.jobs.JobInputError`);
the API's exception handler (`config.api.exception_handler`) answers `{"detail": message}` with the class's
`http_status`, so the same error gets the same status everywhere. Pages show the message.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Something the user can fix or should know; the message is shown as is."""

    http_status = 400


class Forbidden(ServiceError):
    """The user may not do this."""

    http_status = 403


class NotFound(ServiceError):
    """What was asked for does not exist."""

    http_status = 404


class Conflict(ServiceError):
    """The request is fine but the current state does not allow it (closed, already done, taken)."""

    http_status = 409
