"""The two roles: admins (staff users) and labellers (every other signed-in user)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.shortcuts import render
from rest_framework.permissions import BasePermission


def is_admin(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous users go to the login page; signed-in labellers get 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_admin(request.user):
            raise PermissionDenied("Admins only.")
        return view(request, *args, **kwargs)

    return wrapped


class IsAdmin(BasePermission):
    message = "Admins only."

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)


class StaffOnlyPathsMiddleware:
    """Defence in depth: whatever a view forgets, a labeller never gets an admin or compute page.

    Django's own admin would show its login form to a signed-in non-staff user; we answer 403.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefixes = tuple(settings.STAFF_ONLY_PATH_PREFIXES)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(self.prefixes) and request.user.is_authenticated and not is_admin(request.user):
            if request.path.startswith("/api/"):
                return HttpResponseForbidden("Admins only.", content_type="text/plain")
            return render(request, "403.html", status=403)
        return self.get_response(request)
