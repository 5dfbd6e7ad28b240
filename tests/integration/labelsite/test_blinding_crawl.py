"""Crawl everything a labeller can fetch (pages, API, static files, the responses to their own posts)
and assert that no hidden identifier appears: SAE names, ids or methods, feature indices, hook/layer,
the model, item row ids, or other labellers' judgments."""

from __future__ import annotations

import re
from collections import deque
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from compute.models import SAE
from labelsite.models import Campaign, Item
from labelsite.services.campaigns import campaign_close
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = pytest.mark.django_db

FORBIDDEN_JSON_KEYS = {
    "sae",
    "sae_id",
    "sae_name",
    "method",
    "feature",
    "feature_index",
    "source",
    "layer",
    "hook_name",
    "pk",
}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.gets: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if value and name in ("href", "src", "hx-get", "action", "hx-post"):
                self.gets.add(value)


def _same_site(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def _json_keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _json_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _json_keys(v)}
    return set()


def _label(client, code: str, text: str, score: int):
    data = {"domain_explanation": text, "domain_score": score, "general_explanation": text, "general_score": score}
    return client.post(reverse("label:item", args=[code]), data)


@pytest.fixture
def blind_setup(client, alice, bob, carol):
    # Large d_sae: sampled feature indices are long numbers that cannot appear by chance.
    registry = registry_create(d_sae=900_000, names=("qxv-direct-math", "qxv-specialised-math"))
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=[bob, carol], overlap=2, features=6, panel_order="random")
    )
    # Move item row ids far from any small number that pages show (counts, page numbers).
    for i, item in enumerate(Item.objects.filter(campaign=campaign).order_by("pk")):
        Item.objects.filter(pk=item.pk).update(id=7_300_000 + 7919 * (i + 1))
    responses = []
    client.force_login(carol)
    r = client.post(reverse("label:next", args=[campaign.pk]))
    carol_code = r["Location"].rstrip("/").rsplit("/", 1)[1]
    _label(client, carol_code, "carol-private-explanation", 2)
    client.force_login(bob)
    r = client.post(reverse("label:next", args=[campaign.pk]), follow=True)
    responses.append(r)
    for n in range(3):
        code = r.request["PATH_INFO"].rstrip("/").rsplit("/", 1)[1]
        r = _label(client, code, f"bob explanation {n}", n)
        responses.append(r)
        r = client.get(r["Location"])
        responses.append(r)
    code = r.request["PATH_INFO"].rstrip("/").rsplit("/", 1)[1]
    responses.append(client.post(reverse("label:skip", args=[code]), {"reason": "cannot read"}, follow=True))
    responses.append(client.post(reverse("label-api:next", args=[campaign.pk])))
    api_code = responses[-1].json()["item"]["code"]
    responses.append(
        client.post(
            reverse("label-api:judge", args=[api_code]),
            {"domain_score": 1, "general_score": 1},
            content_type="application/json",
        )
    )
    return campaign, registry, responses


def _forbidden_patterns(campaign: Campaign, registry) -> list[re.Pattern]:
    words = [s.name for s in registry.saes] + ["qxv-", registry.lm.name, "hook_resid", "blocks.7"]
    words += [label for _, label in SAE.Method.choices] + [m for m, _ in SAE.Method.choices]
    numbers = list(Item.objects.filter(campaign=campaign).values_list("feature_index", flat=True))
    numbers += list(Item.objects.filter(campaign=campaign).values_list("pk", flat=True))
    patterns = [re.compile(rf"(?<![\w-]){re.escape(w)}(?![\w-])", re.IGNORECASE) for w in words]
    # Small numbers appear legitimately (counts, scores); the setups make hidden numbers long.
    patterns += [re.compile(rf"(?<![\w.-]){n}(?![\w.-])") for n in numbers if n >= 10_000]
    patterns.append(re.compile("carol-private-explanation"))
    return patterns


def _crawl(client, starts: list[str]) -> list:
    seen: set[str] = set()
    queue = deque(starts)
    fetched = []
    while queue:
        url = queue.popleft().split("#")[0]
        if (
            url in seen
            or not _same_site(url)
            or url.startswith(("/accounts/logout", "/admin/", "/compute/", "/manage/"))
        ):
            continue
        seen.add(url)
        response = client.get(url)
        fetched.append(response)
        content_type = response.get("Content-Type", "")
        body = b"".join(response.streaming_content) if response.streaming else response.content
        text = body.decode(errors="replace")
        if "html" in content_type:
            parser = _Links()
            parser.feed(text)
            queue.extend(parser.gets)
        elif "json" in content_type:
            queue.extend(re.findall(r'"(/(?:label|api/label)/[^"]*)"', text))
            data = response.json()
            data = data["results"] if isinstance(data, dict) and "results" in data else data  # a page of a list
            for campaign in data if isinstance(data, list) else [data]:
                if isinstance(campaign, dict) and "progress" in campaign and "id" in campaign:
                    cid = campaign["id"]
                    queue.extend([f"/api/label/campaigns/{cid}/", f"/api/label/campaigns/{cid}/judgments/"])
    return fetched


def _text(response) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    return headers + "\n" + body.decode(errors="replace")


def _assert_blind(responses, patterns) -> int:
    for response in responses:
        text = _text(response)
        for pattern in patterns:
            match = pattern.search(text)
            assert match is None, f"{response.request['PATH_INFO']} reveals {match.group(0)!r}"
        if "json" in response.get("Content-Type", ""):
            keys = _json_keys(response.json())
            assert not keys & FORBIDDEN_JSON_KEYS, (
                f"{response.request['PATH_INFO']} has keys {keys & FORBIDDEN_JSON_KEYS}"
            )
    return len(responses)


def test_nothing_a_labeller_can_fetch_reveals_the_source(client, blind_setup, bob):
    campaign, registry, posted = blind_setup
    patterns = _forbidden_patterns(campaign, registry)
    assert len(patterns) >= 10 + 20  # words + (nearly all) 12 feature indices and 12 row ids
    item_codes = list(Item.objects.filter(campaign=campaign, assignments__labeller=bob).values_list("code", flat=True))
    starts = ["/", "/label/", "/api/label/campaigns/"] + [f"/label/i/{c}/" for c in item_codes]
    starts += [f"/api/label/items/{c}/" for c in item_codes]
    fetched = _crawl(client, starts)
    paths = {r.request["PATH_INFO"] for r in fetched}
    # the crawl really reached the labeller's pages, item pages, API and static files
    assert {"/label/", f"/label/c/{campaign.pk}/", f"/label/c/{campaign.pk}/mine/"} <= paths
    assert any(p.startswith("/static/") and p.endswith(".js") for p in paths)
    assert sum(p.startswith("/label/i/") for p in paths) >= 4
    assert sum(p.startswith("/api/label/items/") for p in paths) >= 4
    assert _assert_blind(fetched + posted, patterns) > 20
    # still blind after the campaign closes (the mapping is for admins)
    campaign_close(campaign_id=campaign.pk)
    _assert_blind(_crawl(client, starts), patterns)


def test_the_crawler_would_catch_a_leak(client, blind_setup, bob):
    """Guard against a vacuous crawl: put a source name in the guidelines and it must be found."""
    campaign, registry, _ = blind_setup
    Campaign.objects.filter(pk=campaign.pk).update(guidelines=f"psst: {registry.saes[1].name}")
    with pytest.raises(AssertionError, match="reveals"):
        _assert_blind(_crawl(client, ["/label/"]), _forbidden_patterns(campaign, registry))


def test_item_codes_are_random_and_unrelated_to_creation_order(blind_setup):
    campaign, _, _ = blind_setup
    codes = list(Item.objects.filter(campaign=campaign).order_by("pk").values_list("code", flat=True))
    assert len(set(codes)) == len(codes) == 12
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{12}", c) for c in codes)
    assert codes != sorted(codes)
