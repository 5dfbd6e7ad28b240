"""The campaign form in a real browser: plain labels, repeated items and gold lines, and a bad gold line
explained at its own field."""

from __future__ import annotations

import pytest

from labelsite.models import Campaign
from tests.browser.labelling import fill_campaign_form
from tests.integration.labelsite.factories import registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _fill(page, registry, bob, gold: str) -> None:
    page.goto("/manage/campaigns/new/")
    fill_campaign_form(page, registry, bob, name="Checked campaign", features="10")
    page.get_by_label("Repeated items (% of each labeller's items)").fill("10")
    page.get_by_label("Check items with known answers (gold items, optional)").fill(gold)
    page.get_by_role("button", name="Create campaign").click()


def test_an_admin_adds_repeats_and_gold_items_from_the_form(page, login, alice, bob):
    registry = registry_create()
    login(alice)
    page.goto("/manage/campaigns/new/")
    text = page.inner_text("main form.card")
    for jargon in ("Overlap k (judgments", "Lease (minutes)", "Panel extras\n", "Random features per SAE"):
        assert jargon not in text
    assert "Labellers per feature (overlap k)" in text and "Minutes a labeller may keep an open item (lease)" in text

    _fill(page, registry, bob, f"{registry.saes[0].name} 5: domain_score=7")
    error = page.locator("#id_gold ~ .errorlist, #id_gold + .errorlist").first
    assert "not a score" in error.inner_text() and "Gold item 1" in error.inner_text()
    assert not Campaign.objects.exists()

    _fill(page, registry, bob, f"{registry.saes[0].name} 5: domain_score=3, nice=no")
    page.wait_for_url(lambda url: "/new/" not in url)
    campaign = Campaign.objects.get()
    assert campaign.repeat_share == 0.1
    assert campaign.gold == [
        {"sae_id": registry.saes[0].pk, "feature_index": 5, "expected": {"domain_score": 3, "nice": False}}
    ]
