"""The analyst API: token authentication, 401 for anonymous requests, one OpenAPI schema with docs served
from our own static files, and pagination on every list."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from compute.models import SAE, DashboardSet, Evaluation, FeatureDashboard
from tests.integration.labelsite.factories import registry_create
from tests.integration.test_roles import _all_paths, _concrete

pytestmark = pytest.mark.django_db


def api_paths() -> list[str]:
    paths = {_concrete(r) for r in _all_paths()} - {None}
    return sorted(p for p in paths if p.startswith("/api/"))


def test_api_has_the_analyst_endpoints():
    paths = set(api_paths())
    for path in (
        "/api/schema/",
        "/api/docs/",
        "/api/manage/campaigns/",
        "/api/manage/campaigns/1/judgments/",
        "/api/compute/saes/",
        "/api/compute/evaluations/",
        "/api/compute/dashboards/",
        "/api/compute/dashboards/1/features/",
    ):
        assert path in paths


@pytest.mark.parametrize("path", api_paths())
def test_anonymous_gets_401_on_every_api_path(client, path):
    for method in ("get", "post"):
        response = getattr(client, method)(path)
        assert response.status_code == 401, f"{method.upper()} {path} gave {response.status_code}"
        assert response["WWW-Authenticate"].startswith("Token")


def test_token_from_the_command_authenticates_scripts(client, alice, bob):
    out = StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = Token.objects.get(user=alice).key
    assert key in out.getvalue()
    assert client.get("/api/compute/saes/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert client.get("/api/compute/saes/", HTTP_AUTHORIZATION="Token not-a-key").status_code == 401
    labeller_key = Token.objects.create(user=bob).key
    assert client.get("/api/compute/saes/", HTTP_AUTHORIZATION=f"Token {labeller_key}").status_code == 403
    assert client.get("/api/label/campaigns/", HTTP_AUTHORIZATION=f"Token {labeller_key}").status_code == 200


def test_tokens_are_managed_in_the_admin(client, alice):
    alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 200
    assert client.get("/admin/authtoken/tokenproxy/add/").status_code == 200


def test_schema_lists_every_api_path_and_the_docs_load_nothing_from_elsewhere(admin_client):
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["openapi"].startswith("3.")
    documented = set(schema["paths"])
    for path in api_paths():
        if path in ("/api/schema/", "/api/docs/") or path.endswith("/api/compute/"):
            continue
        templated = re.sub(r"/1/", "/{id}/", path)
        assert any(re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", p), path) for p in documented), (path, templated)
    for page in ("/api/docs/",):
        html = admin_client.get(page).content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources and all(not s.startswith(("http:", "https:", "//")) for s in sources), sources
        assert "<script>" not in html  # the Content-Security-Policy allows only our own script files
        for source in sources:
            assert admin_client.get(source).status_code == 200, source


def _feature_rows(n: int) -> None:
    registry = registry_create()
    sae = registry.saes[0]
    dset = DashboardSet.objects.create(sae=sae, corpus=registry.domain, status="ready", n_features=n)
    FeatureDashboard.objects.bulk_create(
        FeatureDashboard(dashboard_set=dset, feature_index=i, frequency=i / n, payload=b"") for i in range(n)
    )
    Evaluation.objects.create(sae=sae, corpus=registry.domain, results={"mse": 0.1})


def test_every_list_is_paginated(admin_client):
    _feature_rows(150)
    dset = DashboardSet.objects.get()
    lists = [
        "/api/compute/jobs/",
        "/api/compute/saes/",
        "/api/compute/evaluations/",
        "/api/compute/dashboards/",
        f"/api/compute/dashboards/{dset.pk}/features/",
        "/api/manage/campaigns/",
        "/api/label/campaigns/",
    ]
    for path in lists:
        body = admin_client.get(path).json()
        assert set(body) == {"count", "next", "previous", "results"}, path
    page = admin_client.get(f"/api/compute/dashboards/{dset.pk}/features/?limit=100&offset=100").json()
    assert page["count"] == 150 and [r["feature_index"] for r in page["results"]] == list(range(100, 150))
    assert page["next"] is None and page["previous"] is not None
    saes = admin_client.get("/api/compute/saes/").json()
    assert saes["count"] == SAE.objects.count() == 2
    evaluations = admin_client.get(f"/api/compute/evaluations/?sae={dset.sae_id}").json()
    assert [e["results"] for e in evaluations["results"]] == [{"mse": 0.1}]


def test_a_labeller_gets_only_the_schema_of_their_own_api(admin_client, bob):
    client = Client()
    client.force_login(bob)
    mine = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert mine.status_code == 200
    text = mine.content.decode()
    paths = set(mine.json()["paths"])
    assert paths and all(p.startswith("/api/label/") for p in paths), sorted(paths)
    # none of the admin endpoints, and none of the method names an admin's enums carry
    for method in SAE.Method:
        assert method.label not in text and f'"{method.value}"' not in text, method
    everything = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    all_paths = set(everything.json()["paths"])
    assert paths < all_paths and any(p.startswith("/api/manage/") for p in all_paths)
    assert any(p.startswith("/api/compute/") for p in all_paths)
    assert any(method.label in everything.content.decode() for method in SAE.Method)
    # the docs page reads the schema at its URL, so a labeller's docs show their own endpoints only
    assert client.get("/api/docs/").status_code == 200
