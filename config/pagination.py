"""Pagination for API views that are functions rather than generic views: every list is paginated."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response


def paginated_response(request: Request, rows: Iterable, serialize: Callable[[Any], Any] | None = None) -> Response:
    """`{"count", "next", "previous", "results"}` for one page of `rows` (a queryset or a list), with
    `?limit=` and `?offset=` as everywhere else; `serialize` turns each row of the page into JSON data."""
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(rows, request)
    results = [serialize(row) for row in page] if serialize else list(page)
    return paginator.get_paginated_response(results)
