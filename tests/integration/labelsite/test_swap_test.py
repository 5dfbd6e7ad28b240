"""The swap test and the split audit: presentation is a function of content, proven by rendering every item as
each other source; only presentation gates opening; content separability is reported in plain words.

Two synthetic SAEs get dashboards on both corpora. "Sharply different" ones differ in density and rarity (the
content labellers are meant to judge); "alike" ones are drawn from the same distribution. Planted leaks are a
rendering that reads the item's source, the one thing it must never do.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse

from labelsite.models import Campaign
from labelsite.services import panels
from labelsite.services.audit import CONTENT, PRESENTATION, observable_kind
from labelsite.services.campaigns import campaign_open
from tests.integration.labelsite.factories import campaign_draft, registry_create, synthetic_dashboards

pytestmark = pytest.mark.django_db

D_SAE = 200
N_PER_SOURCE = 40


def _registry(centres: tuple[float, float]):
    registry = registry_create(d_sae=D_SAE, names=("first-sae", "second-sae"))
    rng = np.random.default_rng(0)
    for k, (sae, centre) in enumerate(zip(registry.saes, centres, strict=True)):
        log_d = rng.normal(centre, 0.5, D_SAE).clip(-4.9, -0.5)
        log_g = (log_d + rng.normal(0, 0.3, D_SAE)).clip(-4.9, -0.5)
        synthetic_dashboards(sae=sae, corpus=registry.domain, log10_freqs=log_d.tolist(), scale=(1, 3), seed=10 + k)
        synthetic_dashboards(sae=sae, corpus=registry.general, log10_freqs=log_g.tolist(), scale=(1, 3), seed=20 + k)
    return registry


@pytest.fixture
def sharply_different(db):
    return _registry((-1.5, -3.8))  # dense (1 in 30 tokens) vs rare (1 in 6,300): content differs


@pytest.fixture
def alike(db):
    return _registry((-2.5, -2.5))


def test_defaults_pass_the_swap_test_and_open_on_presentation_while_content_is_reported(
    sharply_different, bob, alice, client
):
    draft = campaign_draft(registry=sharply_different, labellers=[bob], features=N_PER_SOURCE, name="content")
    campaign = campaign_open(campaign_id=draft.pk)
    assert campaign.status == Campaign.Status.OPEN, campaign.prepare_error
    audit = campaign.audit
    swap = audit["presentation"]["swap_test"]
    # every item, both panels, rendered as each of the two sources
    assert swap["passed"] and swap["items"] == 2 * N_PER_SOURCE and swap["renderings"] == 2 * 2 * 2 * N_PER_SOURCE
    assert audit["presentation"]["verdict"] == "pass" and not audit["leak"]
    low, high = audit["presentation"]["interval"]
    assert low <= audit["presentation"]["chance"] <= high + 0.1
    # the content tells the sources apart, as it should: dense features light up many more tokens
    assert audit["content"]["interval"][0] > audit["content"]["chance"]
    separating = audit["content"]["separating"]
    assert separating and all(observable_kind(o["observable"]) == CONTENT for o in separating)
    assert any("tokens fire" in o["words"] for o in separating)
    # by hand, on the stored bytes: the mean number of shaded tokens per item differs between the sources
    shaded = {s.pk: [] for s in campaign.sources.all()}
    for source_id, html in campaign.items.values_list("source_id", "domain_html"):
        shaded[source_id].append(len(re.findall(r'<span class="h\d\d">', html)))
    first, second = (np.mean(v) for v in shaded.values())
    assert first > 2 * second
    client.force_login(alice)
    page = client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert "Features from these sources differ in what labellers see: how many tokens fire" in page
    assert "not a leak" in page and "Presentation blind: Swap test passed" in page


def _planting(monkeypatch, second_sae_id: int, plant) -> None:
    """Render the second SAE's items through `plant`: a presentation that depends on the source."""
    render = panels.item_panel

    def leaky(**kwargs) -> str:
        html = render(**kwargs)
        return plant(html) if kwargs["item"].sae_id == second_sae_id else html

    monkeypatch.setattr(panels, "item_panel", leaky)


EXTRA_ROW = '<li><span class="ctx"><span>extra</span></span></li>'
PLANTS = {
    "class": (
        lambda h: h.replace('class="dash blind-panel"', 'class="dash blind-panel wide"', 1),
        'style class "wide"',
    ),
    "rows": (
        lambda h: h.replace("</ul>", EXTRA_ROW + "</ul>", 1),
        "context rows: 1",
    ),  # 15 instead of 16, or the reverse
    "number format": (lambda h: re.sub(r"(\d),(\d)", r"\1\2", h), "from character"),
}


@pytest.mark.parametrize("leak", sorted(PLANTS))
def test_a_planted_presentation_leak_fails_the_swap_test_and_names_the_part(alike, bob, monkeypatch, leak):
    plant, detail = PLANTS[leak]
    _planting(monkeypatch, alike.saes[1].pk, plant)
    extras = ["frequency"] if leak == "number format" else []  # "Fires on 1,234 of 100,000 tokens"
    draft = campaign_draft(registry=alike, labellers=[bob], features=N_PER_SOURCE, panel_extras=extras, name=leak)
    campaign = campaign_open(campaign_id=draft.pk)
    assert campaign.status == Campaign.Status.DRAFT
    swap = campaign.audit["presentation"]["swap_test"]
    assert not swap["passed"] and campaign.audit["leak"] and campaign.audit["presentation"]["verdict"] == "fail"
    first = swap["differences"][0]
    assert first["part"] in ("the domain panel", "the general panel") and first["as_source"] in (1, 2)
    assert detail in first["detail"], first
    assert "Swap test failed" in campaign.prepare_error and first["part"] in campaign.prepare_error
    # confirmed, it opens anyway (the admin was told)
    assert campaign_open(campaign_id=campaign.pk, confirm_leak=True).status == Campaign.Status.OPEN


def test_presentation_audit_fails_on_a_planted_leak_that_keeps_content_equal(alike, bob, monkeypatch):
    _planting(monkeypatch, alike.saes[1].pk, PLANTS["class"][0])
    draft = campaign_draft(registry=alike, labellers=[bob], features=N_PER_SOURCE, name="planted")
    audit = campaign_open(campaign_id=draft.pk).audit
    presentation, content = audit["presentation"], audit["content"]
    assert presentation["interval"][0] > presentation["chance"] and presentation["accuracy"] > 0.95
    assert presentation["most_revealing"]["observable"].endswith("class.wide")
    assert observable_kind(presentation["most_revealing"]["observable"]) == PRESENTATION
    # the content, drawn alike for both sources, does not tell them apart
    assert content["interval"][0] <= content["chance"] and not content["separating"]
    assert "look alike" in content["summary"]
