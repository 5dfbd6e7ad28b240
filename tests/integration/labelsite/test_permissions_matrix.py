"""Every labelling page and API endpoint for every role: anonymous, outsider, member labeller, admin."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelsite.models import Item
from labelsite.services.assignment import assignment_next
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db

LOGIN = "login"  # a redirect to the login page
JUDGMENT = {"domain_score": 1, "general_score": 2, "domain_explanation": "a", "general_explanation": "b"}

# (method, url name, args kind, body, {role: expected status or LOGIN})
MATRIX = [
    ("get", "label:index", None, None, {"anon": LOGIN, "outsider": 200, "member": 200, "admin": 200}),
    ("get", "label:campaign", "campaign", None, {"anon": LOGIN, "outsider": 404, "member": 200, "admin": 404}),
    ("post", "label:next", "campaign", None, {"anon": LOGIN, "outsider": 404, "member": 302, "admin": 404}),
    ("get", "label:mine", "campaign", None, {"anon": LOGIN, "outsider": 404, "member": 200, "admin": 404}),
    ("get", "label:item", "item", None, {"anon": LOGIN, "outsider": 404, "member": 200, "admin": 404}),
    ("post", "label:item", "item", JUDGMENT, {"anon": LOGIN, "outsider": 404, "member": 302, "admin": 404}),
    ("post", "label:skip", "item", {"reason": "x"}, {"anon": LOGIN, "outsider": 404, "member": 302, "admin": 404}),
    # Undoing a skip one has not made says so on the item's page (which then answers 404 to anyone else).
    ("post", "label:unskip", "item", None, {"anon": LOGIN, "outsider": 302, "member": 302, "admin": 302}),
    # The live probe is off unless the campaign switches it on (panel extra "probe"): 404 for everyone here.
    ("post", "label:probe", "item", {"text": "x"}, {"anon": LOGIN, "outsider": 404, "member": 404, "admin": 404}),
    ("get", "manage:campaign-list", None, None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage:campaign-new", None, None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200}),
    (
        "post",
        "manage:guidelines-preview",
        None,
        {"guidelines": "x"},
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200},
    ),
    ("get", "manage:campaign", "campaign", None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage:campaign-close", "campaign", None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302}),
    ("post", "manage:campaign-open", "campaign", None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302}),
    ("post", "manage:campaign-audit", "campaign", None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302}),
    ("post", "manage:campaign-reopen", "campaign", None, {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302}),
    (
        "post",
        "manage:campaign-reassign",
        "campaign",
        {"from_user": "member"},
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302},
    ),
    (
        "get",
        "manage:campaign-results",
        "campaign",
        None,
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200},
    ),
    (
        "get",
        "manage:campaign-autointerp",
        "campaign",
        None,
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200},
    ),
    (
        "post",
        "manage:campaign-autointerp-start",
        "campaign",
        None,
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302},
    ),
    (
        "get",
        "manage:campaign-autointerp-export",
        "csv",
        None,
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200},
    ),
    (
        "post",
        "manage:campaign-plan",
        None,
        {"plan-rho": "0.5", "plan-feature_sd": "0.8", "plan-labeller_sd": "0.6"},
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 200},
    ),
    (
        "post",
        "manage:campaign-judge-start",
        "campaign",
        None,
        {"anon": LOGIN, "outsider": 403, "member": 403, "admin": 302},
    ),
    ("get", "label-api:campaigns", None, None, {"anon": 401, "outsider": 200, "member": 200, "admin": 200}),
    ("get", "label-api:campaign", "campaign", None, {"anon": 401, "outsider": 404, "member": 200, "admin": 404}),
    ("post", "label-api:next", "campaign", None, {"anon": 401, "outsider": 404, "member": 200, "admin": 404}),
    ("get", "label-api:judgments", "campaign", None, {"anon": 401, "outsider": 404, "member": 200, "admin": 404}),
    ("get", "label-api:item", "item", None, {"anon": 401, "outsider": 404, "member": 200, "admin": 404}),
    ("post", "label-api:judge", "item", JUDGMENT, {"anon": 401, "outsider": 404, "member": 201, "admin": 404}),
    ("post", "label-api:skip", "item", {"reason": "x"}, {"anon": 401, "outsider": 404, "member": 200, "admin": 404}),
    ("get", "manage-api:campaigns", None, None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:campaign", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage-api:close", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage-api:open", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage-api:audit", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:audit", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage-api:reopen", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 409}),
    (
        "post",
        "manage-api:reassign",
        "campaign",
        {"from_user_id": "member"},
        {"anon": 401, "outsider": 403, "member": 403, "admin": 200},
    ),
    ("get", "manage-api:items", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:judgments", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:results", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:judge", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage-api:judge", "campaign", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 202}),
    ("get", "manage-api:judgments-export", "csv", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:breakdown", "json", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("get", "manage-api:figure", "figure", None, {"anon": 401, "outsider": 403, "member": 403, "admin": 200}),
    ("post", "manage-api:campaigns", None, {}, {"anon": 401, "outsider": 403, "member": 403, "admin": 400}),
]


def test_matrix_covers_every_labelling_url():
    from tests.integration.test_roles import _all_paths

    routes = {r for r in _all_paths() if r.startswith(("label/", "manage/", "api/label/", "api/manage/"))}
    names = {name for _m, name, *_ in MATRIX}
    assert len(routes) == len(names)


@pytest.mark.parametrize("role", ["anon", "outsider", "member", "admin"])
@pytest.mark.parametrize(
    ("method", "name", "kind", "body", "expected"), MATRIX, ids=[f"{m} {n}" for m, n, *_ in MATRIX]
)
def test_role_endpoint_matrix(client, registry, alice, bob, carol, role, method, name, kind, body, expected):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob]))
    held = assignment_next(campaign_id=campaign.pk, labeller=bob)
    code = Item.objects.get(pk=held.item_id).code
    user = {"anon": None, "outsider": carol, "member": bob, "admin": alice}[role]
    if user is not None:
        client.force_login(user)
    args = {
        "campaign": [campaign.pk],
        "csv": [campaign.pk, "csv"],
        "json": [campaign.pk, "json"],
        "figure": [campaign.pk, "breakdown", "svg"],
        "item": [code],
        None: [],
    }[kind]
    url = reverse(name, args=args)
    data = {k: (bob.pk if v == "member" else v) for k, v in (body or {}).items()}
    response = _send(client, method, name, url, data)
    want = expected[role]
    if want == LOGIN:
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == want, response.content[:300]


def _send(client, method: str, name: str, url: str, data: dict):
    if method == "get":
        return client.get(url)
    if name.split(":")[0].endswith("api"):
        return client.post(url, data, content_type="application/json")
    return client.post(url, data)
