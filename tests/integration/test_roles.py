"""Labellers get 403 on every admin and compute page and API endpoint; anonymous users must log in."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from compute.jobs import job_create
from compute.models import JobKind

pytestmark = pytest.mark.django_db


def _all_paths(resolver=None, prefix: str = "") -> list[str]:
    """Every concrete URL of the project, with ids filled in as 1 (and slugs as 'x')."""
    resolver = resolver or get_resolver()
    paths: list[str] = []
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            paths += _all_paths(pattern, route)
        elif isinstance(pattern, URLPattern):
            paths.append(route)
    return paths


def _concrete(route: str) -> str | None:
    """A URL for a route, ids as 1 and other parameters as 'x'; None for format-suffix variants."""
    if "format" in route:
        return None
    route = route.replace("^", "").replace("$", "").replace("\\Z", "")
    route = re.sub(r"\(\?P<(?:pk|\w*_id)>[^)]*\)", "1", route)
    route = re.sub(r"\(\?P<app_label>[^)]*\)", "compute", route)
    route = re.sub(r"<int:[^>]+>", "1", route)
    route = re.sub(r"<(?:\w+:)?\w+>", "x", route)
    return "/" + route


def staff_only_paths() -> list[str]:
    from django.conf import settings

    prefixes = settings.STAFF_ONLY_PATH_PREFIXES
    paths = {_concrete(r) for r in _all_paths()} - {None}
    return sorted(p for p in paths if p.startswith(prefixes))


def test_project_has_staff_only_pages():
    paths = staff_only_paths()
    assert "/admin/" in paths
    assert "/compute/" in paths
    assert "/compute/jobs/1/" in paths
    assert "/api/compute/jobs/" in paths


@pytest.mark.parametrize("path", staff_only_paths())
def test_labeller_gets_403_on_every_admin_and_compute_path(labeller_client, alice, path):
    job_create(kind=JobKind.SELFCHECK, enqueue=False)
    for method in ("get", "post"):
        response = getattr(labeller_client, method)(path)
        assert response.status_code == 403, f"{method.upper()} {path} gave {response.status_code}"


@pytest.mark.parametrize("path", ["/compute/", "/compute/jobs/"])
def test_anonymous_is_sent_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_admin_opens_compute_pages(admin_client):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    for path in ("/compute/", "/compute/jobs/", f"/compute/jobs/{job.pk}/", "/api/compute/jobs/", "/admin/"):
        assert admin_client.get(path).status_code == 200, path


def test_login_page_renders_and_logs_in(client, bob):
    from tests.conftest import PASSWORD

    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
