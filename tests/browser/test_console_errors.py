"""Every page an admin or a labeller reaches runs without a single browser console error: no script error,
no resource that fails to load (the favicon included), nothing the Content-Security-Policy refuses (figures
are inline SVG without a <style> block)."""

from __future__ import annotations

import pytest

from labelsite.models import Item
from labelsite.services.assignment import assignment_next
from labelsite.services.judgments import judgment_submit
from tests.browser.crawl import crawl
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAV = ["/", "/label/", "/manage/campaigns/", "/compute/", "/compute/jobs/"]
MAX_PAGES = 40


def _judge_all(campaign, users) -> None:
    """Every item judged by every labeller, with scores that differ by source (so results draw figures)."""
    for user in users:
        while (held := assignment_next(campaign_id=campaign.pk, labeller=user)) is not None:
            item = Item.objects.select_related("source__sae").get(pk=held.item_id)
            score = (item.feature_index + len(item.source.sae.name)) % 4
            judgment_submit(
                item_code=item.code,
                labeller=user,
                answers={
                    "domain_explanation": f"f{item.feature_index}",
                    "domain_score": score,
                    "general_explanation": "",
                    "general_score": (score + 1) % 4,
                    "nice": False,
                    "comment": "",
                },
                time_spent_ms=1500,
                panel_order="domain_first",
            )


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
    _judge_all(campaign, [bob, carol])
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
