"""A failed campaign form lists every problem at once in a summary at the top, each linking to its field;
the browser's own checks do not stop the submit one field at a time, the server's rules apply."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labelsite.models import Campaign
from tests.browser.labelling import fill_campaign_form
from tests.integration.labelsite.factories import registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_every_problem_is_summarised_at_the_top_and_links_to_its_field(page, login, console_errors, alice, bob):
    registry = registry_create()
    login(alice)
    page.goto("/manage/campaigns/new/")
    page.fill("#id_features_per_sae", "0")  # the browser alone would only show a tooltip for this one
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_load_state("load")
    summary = page.locator("#error-summary")
    expect(summary).to_be_visible()
    expect(summary).to_be_in_viewport()
    expect(summary).to_be_focused()
    items = summary.locator("li")
    texts = [t.lower() for t in items.all_inner_texts()]
    assert len(texts) >= 4, texts  # name, SAEs, corpora, labellers, 0 features: all in one round
    assert any("features to draw from each sae" in t and "greater than or equal to 1" in t for t in texts), texts
    assert any(t.startswith("name") for t in texts), texts
    summary.get_by_role("link", name="Features to draw from each SAE").click()
    expect(page.locator("#field-features_per_sae")).to_be_in_viewport()

    # the form is valid, the service's rules are not: both problems, in one round
    fill_campaign_form(page, registry, bob, name="Too much", features="1000")
    page.get_by_label("Labellers per feature (overlap k)").fill("3")
    page.get_by_role("button", name="Create campaign").click()
    page.wait_for_load_state("load")
    text = page.locator("#error-summary").inner_text()
    assert "sample between 1 and 64" in text and "Overlap k = 3 needs at least 3 labellers" in text
    assert not Campaign.objects.exists()
    assert console_errors == []
