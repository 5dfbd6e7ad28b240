"""Site-wide protections: the Content-Security-Policy header, throttled sign-ins, styled error pages,
and records that only services write being read-only in Django's admin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import RequestFactory

from config.models import LoginFailure
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _login(client, username: str, password: str, address: str = "10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_pages_allow_only_our_own_scripts_and_styles(client, bob):
    client.force_login(bob)
    policy = client.get("/").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


def test_an_account_is_locked_after_repeated_failures_even_with_the_right_password(client, bob, settings):
    settings.LOGIN_MAX_FAILURES_PER_ACCOUNT = 3
    for attempt in range(3):
        # Failures from three different addresses still count against the one account.
        response = _login(client, "bob", "wrong", address=f"10.0.0.{attempt}")
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    response = _login(client, "Bob", PASSWORD, address="10.9.9.9")
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from the same addresses is unaffected.
    assert _login(client, "alice", "wrong").status_code == 200
    assert LoginFailure.objects.filter(username="bob").count() == 3


def test_an_address_is_throttled_across_accounts(client, bob, settings):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    for name in ("ann", "ben", "cat", "dan"):
        _login(client, name, "wrong", address="192.0.2.7")
    response = _login(client, "bob", PASSWORD, address="192.0.2.7")
    assert "Too many failed sign-in attempts" in response.content.decode()
    # The same account signs in from elsewhere.
    response = _login(client, "bob", PASSWORD, address="192.0.2.8")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(bob.pk)


def test_failures_outside_the_window_do_not_count(client, bob, settings):
    settings.LOGIN_MAX_FAILURES_PER_ACCOUNT = 2
    for _ in range(2):
        _login(client, "bob", "wrong")
    LoginFailure.objects.update(at="2000-01-01T00:00:00Z")
    assert _login(client, "bob", PASSWORD).status_code == 302


def test_not_found_page_is_styled_with_the_navigation(client, bob):
    client.force_login(bob)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'class="topbar"' in html and "Not found" in html and 'href="/label/"' in html


def test_labeller_on_an_admin_page_gets_a_styled_403(client, bob):
    client.force_login(bob)
    response = client.get("/compute/")
    assert response.status_code == 403
    assert 'class="topbar"' in response.content.decode() and "admins only" in response.content.decode()
    # The API keeps a plain answer.
    assert client.get("/api/compute/jobs/").status_code == 403


def test_server_error_page_renders_without_a_request_context():
    from django.views.defaults import server_error

    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode() and 'class="brand"' in response.content.decode()


def test_jobs_are_read_only_in_django_admin(admin_client, alice):
    from compute.jobs import job_create
    from compute.models import JobKind

    alice.is_superuser = True  # Django's admin shows models by permission; a superuser holds them all
    alice.save()
    job = job_create(kind=JobKind.SELFCHECK, params={})
    assert admin_client.get("/admin/compute/job/add/").status_code == 403
    page = admin_client.get(f"/admin/compute/job/{job.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.post(f"/admin/compute/job/{job.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_api_takes_no_passwords_so_the_login_throttle_cannot_be_bypassed(client, bob):
    import base64

    credentials = base64.b64encode(f"bob:{PASSWORD}".encode()).decode()
    response = client.get("/api/label/campaigns/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 401


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"""<[^>]*\s(on[a-z]+|hx-on[:\w-]*)\s*=\s*["']""", re.I)
SCRIPT_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']\s*javascript:""", re.I)


def test_no_template_has_an_inline_script_or_event_handler():
    """The Content-Security-Policy (script-src 'self') blocks them: a check written so would silently not run."""
    root = Path(settings.BASE_DIR)
    templates = [p for app in ("config", "labelsite", "compute") for p in (root / app).rglob("templates/**/*.html")]
    assert len(templates) > 20
    found = [
        (str(path.relative_to(root)), match.group(0)[:80])
        for path in templates
        for pattern in (INLINE_SCRIPT, INLINE_HANDLER, SCRIPT_URL)
        for match in pattern.finditer(path.read_text())
    ]
    assert not found, found
    # the scan itself finds what it looks for
    planted = '<form onsubmit="return confirm(1)"><script>alert(1)</script><a href="javascript:x"><b hx-on:click="y">'
    assert all(p.search(planted) for p in (INLINE_SCRIPT, INLINE_HANDLER, SCRIPT_URL))
    assert not INLINE_HANDLER.search('<button data-confirm="on=1" class="x">') and not INLINE_SCRIPT.search(
        '<script src="/static/a.js" defer></script>'
    )
