"""The campaign form's planner in a real browser (htmx under the Content-Security-Policy), and the results
page's LLM judge section."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.integration.labelsite.conftest import registry  # noqa: F401 - fixture
from tests.integration.labelsite.test_judge_results import judged  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_planner_estimates_widths_for_the_forms_design(page, login, alice):
    login(alice)
    page.goto("/manage/campaigns/new/")
    page.fill("#id_features_per_sae", "50")
    page.fill("#id_judge_only_features", "1000")
    page.get_by_label("Judge–human correlation").fill("0.9")
    page.get_by_role("button", name="Estimate").click()
    page.wait_for_selector("#planner table")
    text = page.inner_text("#planner")
    assert "with labellers alone" in text and "To reach a width of 0.4" in text
    assert page.locator("#planner tbody tr").count() == 5
    # the card is swapped in place, still inside the form, and estimates again with its new values
    page.get_by_label("Judge–human correlation").fill("0")
    page.get_by_role("button", name="Estimate").click()
    expect(page.locator("#planner")).to_contain_text("worth 50.0 labelled features")
    rows = page.locator("#planner tbody tr").all_inner_texts()
    assert all(r.split("\t")[1] == r.split("\t")[3] for r in rows)  # no judge: the same features either way
    page.screenshot(path="/tmp/planner.png", full_page=True)


def test_results_page_shows_the_judge_section(page, login, alice, judged):  # noqa: F811
    campaign, *_ = judged
    login(alice)
    page.goto(f"/manage/campaigns/{campaign.pk}/results/#judge", timeout=180_000)  # bootstraps on a shared CPU
    section = page.locator("#judge")
    assert "Prediction-powered mean" in section.inner_text()
    section.screenshot(path="/tmp/judge_section.png")
