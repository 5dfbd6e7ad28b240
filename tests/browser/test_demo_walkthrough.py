"""The demo's result in the browser: the real demo orchestrator runs the whole study on a tiny random model
(every stage, jobs run in this process as a worker would), then a labeller labels an item with the keyboard
only, and the admin sees the study's three figures, the campaign's results with that judgment counted, and
downloads the judgments as CSV. The README's Quickstart shows its screenshots: `UPDATE_SCREENSHOTS=1`
writes them to docs/screenshots/ (otherwise to this test's temporary folder, so the tree stays clean)."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from compute.models import Study
from compute.services.study_figures import study_figures_of
from labelsite.models import Judgment
from labelsite.selectors.exports import labeller_pseudonym
from labelsite.services.demo import Demo
from tests.integration.compute.test_training_service import setup, tiny_model_dir  # noqa: F401
from tests.integration.labelsite.test_demo_pipeline import drive, endpoint, tiny_config  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ITEM_URL = re.compile(r"/label/i/[\w-]+/$")


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_label_with_the_keyboard_then_see_the_study_results_and_download_them(
    page,
    login,
    alice,
    bob,
    carol,
    setup,  # noqa: F811
    endpoint,  # noqa: F811
    shots,
):
    demo = Demo(tiny_config(setup), admin=alice, labeller_ids=[bob.pk, carol.pk])
    drive(demo)
    campaign, study = demo.campaign(), Study.objects.get()
    assert campaign.status == campaign.Status.OPEN

    # The labeller: from the campaign list to a judgment, keyboard only.
    login(bob)
    page.goto("/label/")
    expect(page.get_by_text(campaign.name)).to_be_visible()
    page.goto(f"/label/c/{campaign.pk}/")
    expect(page.get_by_role("button", name="Start labelling")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(ITEM_URL)
    code = page.url.rstrip("/").rsplit("/", 1)[1]
    expect(page.locator("fieldset[data-question=domain] textarea")).to_be_focused()
    page.keyboard.type("numbers and units in measurements")
    page.keyboard.press("Alt+3")
    expect(page.locator("fieldset[data-question=general] textarea")).to_be_focused()
    page.keyboard.type("digits")
    page.keyboard.press("Alt+1")
    page.keyboard.press("n")
    expect(page.locator("input[name=nice]")).to_be_checked()
    page.screenshot(path=str(shots / "label-item.png"), full_page=True)
    page.keyboard.press("Control+Enter")
    page.wait_for_function("code => !location.pathname.includes(code)", arg=code)
    expect(page.locator(".progress-text")).to_contain_text("1 judged")
    judgment = Judgment.objects.select_related("item__source__sae").get(labeller=bob)
    assert judgment.item.code == code
    assert {k: judgment.answers[k] for k in ("domain_explanation", "domain_score", "general_score", "nice")} == {
        "domain_explanation": "numbers and units in measurements",
        "domain_score": 3,
        "general_score": 1,
        "nice": True,
    }

    # The admin: the study's three figures, each a real chart with axes.
    page.context.clear_cookies()
    login(alice)
    page.goto(f"/compute/studies/{study.pk}/")
    figures = study_figures_of(study.evaluations.get())
    assert list(figures) == ["pareto", "rarity", "novelty"]  # a language model's study: no truth to recover
    for name, title in figures.items():
        svg = page.locator(f"#figure-{name} svg").first
        expect(svg).to_be_visible()
        assert svg.locator("g[id^=xtick]").count() >= 2 and svg.locator("g[id^=ytick]").count() >= 2
        expect(page.locator(f"#figure-{name} figcaption")).to_contain_text(title)
    expect(page.locator("#figure-pareto svg")).to_contain_text("L0")
    expect(page.locator("#figure-rarity svg").first).to_contain_text("log10 firing frequency")
    page.locator("#study-figures").screenshot(path=str(shots / "study-figures.png"))

    # The campaign opened because its presentation passed the swap test and the audit; the content report is shown.
    page.goto(f"/manage/campaigns/{campaign.pk}/")
    expect(page.locator("#blinding-audit")).to_contain_text("Presentation blind: Swap test passed")
    expect(page.locator("#content-report")).to_contain_text("labellers see")
    expect(page.locator("#blinding-audit p.error")).to_have_count(0)
    assert campaign.audit and not campaign.audit["leak"]

    # The campaign's results: the judgment is counted, and its source is shown (unblinded for the admin).
    page.goto(f"/manage/campaigns/{campaign.pk}/results/")
    expect(page.locator("#overview")).to_contain_text(re.compile(r"\b1 judgments? of \d+ features by 1 labeller\b"))
    page.screenshot(path=str(shots / "campaign-results.png"), full_page=False)

    # The CSV: one row, the judgment as stored, with its unblinded source and the labeller's pseudonym.
    with page.expect_download() as download:
        page.get_by_role("link", name="Judgments (CSV)").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert len(rows) == 1
    row, item = rows[0], judgment.item
    assert (row["campaign"], row["item_code"], row["status"]) == (campaign.name, code, "judged")
    assert (row["sae"], row["method"], row["feature_index"]) == (
        item.source.sae.name,
        item.source.sae.method,
        str(item.feature_index),
    )
    assert row["method"] in ("direct", "ssae")
    assert row["labeller"] == labeller_pseudonym(bob.pk) and "bob" not in row.values()
    assert (row["domain_explanation"], row["domain_score"], row["general_score"], row["nice"]) == (
        "numbers and units in measurements",
        "3",
        "1",
        "true",
    )
    assert int(row["time_spent_ms"]) == judgment.time_spent_ms > 0
