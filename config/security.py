"""Site-wide protections: a Content-Security-Policy header and throttled logins.

The policy allows only our own scripts and styles. Style *attributes* stay allowed (`style-src-attr`):
dashboards colour each token with an inline background, and an attribute cannot run code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def client_address(request: HttpRequest) -> str:
    """The client's address; behind a TLS proxy that we trust, the first X-Forwarded-For hop."""
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.META.get("REMOTE_ADDR", "")[:64]


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login form, refusing further attempts after too many recent failures.

    Failures are counted per account and per address over LOGIN_THROTTLE_WINDOW_S, in the database, so
    every web process sees the same count. A successful login does not erase failures from elsewhere.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-in attempts. Wait %(minutes)d minutes and try again.",
    }

    def clean(self):
        from config.models import LoginFailure

        username = (self.cleaned_data.get("username") or "").strip().lower()[:150]
        address = client_address(self.request) if self.request else ""
        since = timezone.now() - timedelta(seconds=settings.LOGIN_THROTTLE_WINDOW_S)
        recent = LoginFailure.objects.filter(at__gte=since)
        if (
            recent.filter(username=username).count() >= settings.LOGIN_MAX_FAILURES_PER_ACCOUNT
            or recent.filter(address=address).count() >= settings.LOGIN_MAX_FAILURES_PER_ADDRESS
        ):
            raise forms.ValidationError(
                self.error_messages["throttled"],
                code="throttled",
                params={"minutes": max(1, settings.LOGIN_THROTTLE_WINDOW_S // 60)},
            )
        try:
            return super().clean()
        except forms.ValidationError:
            LoginFailure.objects.create(username=username, address=address)
            raise
