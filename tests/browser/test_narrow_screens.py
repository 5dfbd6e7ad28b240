"""Every admin page fits a 390 px phone screen without horizontal scrolling: the pages the navigation reaches,
the pages they link to (a campaign, an SAE, a job, ...), each measured in a real browser."""

from __future__ import annotations

import pytest

from compute.jobs import job_create
from compute.models import JobKind
from labelsite.models import Item
from labelsite.services.assignment import assignment_next
from tests.browser.crawl import crawl
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, judge_all, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAV = ["/", "/label/", "/manage/campaigns/", "/compute/", "/compute/jobs/", "/admin/"]
MAX_PAGES = 60


def test_every_admin_page_fits_390px(page, login, alice, bob):
    registry = registry_create()
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, alice], features=2))
    held = assignment_next(campaign_id=campaign.pk, labeller=alice)
    job_create(kind=JobKind.SELFCHECK, enqueue=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_default_timeout(60_000)  # the results page computes its statistics on the first visit
    login(alice)

    item_page = f"/label/i/{Item.objects.get(pk=held.item_id).code}/"  # the labelling page itself
    measured = {}

    def measure(path: str, status: int) -> None:
        if status == 200:
            measured[path] = page.evaluate("document.documentElement.scrollWidth")

    crawl(
        page,
        [*NAV, item_page],
        targets=("/manage/", "/compute/", "/label/"),
        max_pages=MAX_PAGES,
        on_page=measure,
        follow_from=lambda path: path in NAV or path.startswith(("/manage/campaigns/", "/compute/")),
    )
    # the detail pages are among those measured
    assert any(p.startswith(f"/manage/campaigns/{campaign.pk}/") for p in measured)
    assert any("/saes/" in p for p in measured), sorted(measured)
    assert any(p.startswith("/compute/jobs/") and p != "/compute/jobs/" for p in measured)
    assert item_page in measured
    assert len(measured) >= 20 and "/admin/" in measured, sorted(measured)
    too_wide = {p: w for p, w in measured.items() if w > 390}
    assert not too_wide, f"pages wider than 390 px: {too_wide}"


def test_your_judgments_reads_as_cards_at_390px(page, login, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=3))
    judge_all(campaign, [bob])
    codes = list(Item.objects.filter(campaign=campaign).values_list("code", flat=True))
    assert len(codes) == 6
    page.set_viewport_size({"width": 390, "height": 844})
    login(bob)
    page.goto(f"/label/c/{campaign.pk}/mine/")
    width, height = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert width <= 390
    # each judgment is one card: the code and the Revise link on one line each, the labels beside the values
    line = page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight) || 24")
    for code in codes:
        box = page.locator("code", has_text=code).bounding_box()
        assert box["height"] <= 1.5 * line, (code, box)
    revise = page.get_by_role("link", name="Revise").first.bounding_box()
    assert revise["width"] > revise["height"]
    assert (
        page.locator("table.stack td[data-label='Time']").first.evaluate(
            "td => getComputedStyle(td, '::before').content"
        )
        == '"Time"'
    )
    assert height < 6 * 330, height
