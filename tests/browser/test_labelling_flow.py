"""Moving through items: each opens at the top of the page, Backspace reopens the judgment just submitted (then
labelling carries on where it was), h shows the recent items, and Tab goes from answer to answer without
entering the panels' folded sections or links."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labelsite.models import Item, Judgment
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ITEM_URL = re.compile(r"/label/i/[\w-]+/(\?.*)?$")
# A panel as tall as a real dashboard, with folded sections and a link (as the real ones have).
TALL_PANEL = (
    '<div class="feature-dashboard"><details open><summary>0.8 – 1.0</summary><a href="#top">a link</a></details>'
    '<details><summary>0.5 – 0.8</summary><p>folded</p></details><ol class="examples">'
    + "<li>the cat sat on the mat</li>" * 40
    + "</ol></div>"
)


def _open_campaign(bob, features: int = 2):
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=features))
    Item.objects.filter(campaign=campaign).update(domain_html=TALL_PANEL, general_html=TALL_PANEL)
    return campaign


def _code(page) -> str:
    return page.url.split("?")[0].rstrip("/").rsplit("/", 1)[1]


def _start(page, login, bob, campaign) -> str:
    login(bob)
    page.goto(f"/label/c/{campaign.pk}/")
    page.get_by_role("button", name="Start labelling").click()
    page.wait_for_url(ITEM_URL)
    return _code(page)


def _answer(page, domain: str, general: str) -> None:
    page.locator("textarea[name=domain_explanation]").fill(domain)
    page.locator("input[name=domain_score][value='2']").check()
    page.locator("textarea[name=general_explanation]").fill(general)
    page.locator("input[name=general_score][value='1']").check()


def test_next_item_opens_at_the_top_and_backspace_reopens_the_last_judgment(page, login, bob):
    campaign = _open_campaign(bob)
    first = _start(page, login, bob, campaign)
    assert page.evaluate("window.scrollY") == 0
    expect(page.locator("textarea[name=domain_explanation]")).to_be_focused()

    _answer(page, "cats", "mats")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    assert page.evaluate("window.scrollY") > 500  # the labeller is at the bottom, by the submit button
    page.keyboard.press("Control+Enter")
    page.wait_for_function("code => !location.pathname.includes(code)", arg=first)
    second = _code(page)
    expect(page.locator("#workspace")).to_have_attribute("data-item", second)
    expect(page.locator("textarea[name=domain_explanation]")).to_be_focused()
    assert page.evaluate("window.scrollY") == 0  # the new item opens at the top

    # Backspace in a text box deletes text; outside one it reopens the judgment just submitted
    page.keyboard.type("x")
    page.keyboard.press("Backspace")
    assert _code(page) == second
    page.keyboard.press("Escape")  # leave the text box
    page.keyboard.press("Backspace")
    page.wait_for_function("code => location.pathname.includes(code)", arg=first)
    expect(page.locator("#workspace")).to_have_attribute("data-status", "done")
    expect(page.locator("textarea[name=domain_explanation]")).to_have_value("cats")
    page.locator("textarea[name=domain_explanation]").fill("cats on mats")
    page.keyboard.press("Control+Enter")
    # saved, and labelling carries on with the item that was open
    page.wait_for_function("code => location.pathname.includes(code)", arg=second)
    expect(page.locator("#workspace")).to_have_attribute("data-item", second)
    judgment = Judgment.objects.get(item__code=first, labeller=bob)
    assert judgment.answers["domain_explanation"] == "cats on mats" and judgment.revisions == 1

    # h shows the recent items, the first among them
    page.keyboard.press("Escape")
    page.keyboard.press("h")
    recent = page.locator("#recent")
    expect(recent).to_have_attribute("open", "")
    expect(recent.locator("a")).to_have_count(1)
    expect(recent.locator("a").first).to_have_attribute("href", re.compile(rf"/label/i/{first}/"))


def test_tab_goes_from_answer_to_answer(page, login, bob):
    campaign = _open_campaign(bob, features=1)
    _start(page, login, bob, campaign)
    expect(page.locator("textarea[name=domain_explanation]")).to_be_focused()
    seen = []
    for _ in range(12):
        seen.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " return e.closest('.dashboard-panel, .dashboard') ? 'PANEL:' + e.tagName : (e.name || e.tagName + '.' + e.className); }"
            )
        )
        if seen[-1].startswith("BUTTON"):
            break
        page.keyboard.press("Tab")
    assert seen == [
        "domain_explanation",
        "domain_score",
        "general_explanation",
        "general_score",
        "nice",
        "comment",
        "source_guess",  # the optional guess of the source, last
        "BUTTON.primary",
    ]
    expect(page.locator("form.judgment button[type=submit]")).to_be_focused()
