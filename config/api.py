"""The REST framework edge shared by every app: how service errors become HTTP responses."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import ServiceError


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """`ServiceError` (and subclasses) -> `{"detail": message}` with the class's status; the rest as DRF does."""
    if isinstance(exc, ServiceError):
        return Response({"detail": str(exc)}, status=exc.http_status)
    return drf_exception_handler(exc, context)
