"""Every page an admin or a labeller reaches runs without a single browser console error: no script error,
no resource that fails to load (the favicon included), nothing the Content-Security-Policy refuses (figures
are inline SVG without a <style> block)."""

from __future__ import annotations

import pytest

from tests.browser.crawl import crawl
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, judge_all, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAV = ["/", "/label/", "/manage/campaigns/", "/compute/", "/compute/jobs/"]
MAX_PAGES = 40


def _visit(page, start: list[str], targets: tuple[str, ...]) -> list[str]:
    """The pages visited from `start` (each must answer 200)."""
    visited = []

    def check(path: str, status: int) -> None:
        assert status == 200, (path, status)
        page.wait_for_load_state("load")
        visited.append(path)

    crawl(page, start, targets=targets, max_pages=MAX_PAGES, on_page=check)
    return visited


def test_no_page_logs_a_console_error(page, login, console_errors, alice, bob, carol):
    registry = registry_create()
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol], features=4))
    judge_all(campaign, [bob, carol])
    page.set_default_timeout(60_000)  # the results page computes its statistics on the first visit
    login(alice)
    visited = _visit(page, NAV, ("/manage/", "/compute/"))
    results = f"/manage/campaigns/{campaign.pk}/results/"
    assert results in visited, visited
    page.goto(results)
    assert page.locator("svg").count() >= 2  # the results figures were on the page checked
    assert len(visited) >= 10, visited
    assert console_errors == [], console_errors


def test_labeller_pages_log_no_console_error(page, login, console_errors, bob, carol):
    registry = registry_create()
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol], features=2))
    login(bob)
    visited = _visit(page, ["/", "/label/", f"/label/c/{campaign.pk}/"], ("/label/",))
    page.goto(f"/label/c/{campaign.pk}/")
    page.get_by_role("button", name="Start labelling").click()
    page.wait_for_url("**/label/i/**")
    assert len(visited) >= 3, visited
    assert console_errors == [], console_errors
