"""A labeller judges several items with the keyboard only: explanations, scores, nice, skip, submit,
and a draft that survives a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labelsite.models import Assignment, Judgment
from tests.browser.labelling import ITEM_URL, item_code, next_item
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_label_items_with_the_keyboard_only(page, login, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=3))
    login(bob)
    page.goto(f"/label/c/{campaign.pk}/")
    expect(page.get_by_role("button", name="Start labelling")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(ITEM_URL)
    domain = page.locator("fieldset[data-question=domain] textarea")
    expect(domain).to_be_focused()

    # 1: type, Alt+digit scores and moves on, n = nice, Ctrl+Enter submits (HTMX swaps in the next item)
    first = item_code(page)
    page.keyboard.type("base cases of induction")
    page.keyboard.press("Alt+3")
    expect(page.locator("fieldset[data-question=general] textarea")).to_be_focused()
    page.keyboard.type("the word 'case'")
    page.keyboard.press("Alt+1")
    page.keyboard.press("n")
    page.keyboard.press("Control+Enter")
    second = next_item(page, first)
    expect(page.locator(".progress-text")).to_contain_text("1 judged")

    # 2: Esc leaves the text box; then a plain number key scores it
    expect(domain).to_be_focused()
    page.keyboard.type("circles")
    page.keyboard.press("Escape")
    page.keyboard.press("2")
    page.keyboard.type("round things")
    page.keyboard.press("Escape")
    page.keyboard.press("0")
    page.keyboard.press("Control+Enter")
    third = next_item(page, second)

    # 3: s opens the skip form with its reason field focused; Enter skips
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    expect(page.locator("#id_skip_reason")).to_be_focused()
    page.keyboard.type("examples unreadable")
    page.keyboard.press("Enter")
    fourth = next_item(page, third)

    # 4: a draft survives closing the page
    page.keyboard.type("associativity")
    page.keyboard.press("Alt+2")
    page.wait_for_timeout(100)
    page.reload()
    expect(page.locator("#workspace")).to_have_attribute("data-item", fourth)
    expect(domain).to_have_value("associativity")
    expect(page.locator("fieldset[data-question=domain] input[value='2']")).to_be_checked()
    expect(page.locator(".draft-state")).to_contain_text("Restored")
    page.locator("fieldset[data-question=general] textarea").focus()  # the page focuses the first box
    page.keyboard.type("brackets")
    page.keyboard.press("Alt+3")
    page.keyboard.press("Control+Enter")
    next_item(page, fourth)

    judgments = {j.item.code: j for j in Judgment.objects.filter(labeller=bob).select_related("item")}
    assert set(judgments) == {first, second, fourth}
    j1, j2, j4 = judgments[first], judgments[second], judgments[fourth]
    assert (
        j1.answers["domain_explanation"],
        j1.answers["domain_score"],
        j1.answers["general_score"],
        j1.answers["nice"],
    ) == (
        "base cases of induction",
        3,
        1,
        True,
    )
    assert (
        j2.answers["domain_explanation"],
        j2.answers["domain_score"],
        j2.answers["general_explanation"],
        j2.answers["general_score"],
        j2.answers["nice"],
    ) == (
        "circles",
        2,
        "round things",
        0,
        False,
    )
    assert (j4.answers["domain_explanation"], j4.answers["domain_score"], j4.answers["general_score"]) == (
        "associativity",
        2,
        3,
    )
    assert all(j.time_spent_ms > 0 for j in judgments.values())
    assert Assignment.objects.get(item__code=third, labeller=bob).skip_reason == "examples unreadable"
    # submitted drafts are gone from the browser
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('labelsite:draft:'))") == []


def test_keys_follow_a_campaigns_own_questions(page, login, bob):
    questions = [
        {"key": "summary", "type": "text", "prompt": "What does it track?", "panel": "domain"},
        {"key": "kind", "type": "choice", "prompt": "Kind", "required": True, "panel": "domain",
         "options": [{"value": "token", "label": "A token"}, {"value": "concept", "label": "A concept"}]},
        {"key": "dead", "type": "yesno", "prompt": "Looks dead", "panel": None},
    ]  # fmt: skip
    campaign = campaign_open_offline(
        campaign_draft(registry=registry_create(), labellers=[bob], features=1, questions=questions)
    )
    login(bob)
    page.goto(f"/label/c/{campaign.pk}/")
    expect(page.get_by_role("button", name="Start labelling")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(ITEM_URL)
    code = item_code(page)
    expect(page.locator("fieldset[data-question=domain] textarea")).to_be_focused()
    page.keyboard.type("years")
    page.keyboard.press("Alt+2")  # the second option of "kind"
    page.keyboard.press("d")  # "dead" took d
    expect(page.locator("input[name=dead]")).to_be_checked()
    expect(page.locator("#keys")).to_contain_text('toggle "dead"')
    page.keyboard.press("Control+Enter")
    page.wait_for_function("code => !location.pathname.includes(code)", arg=code)
    assert Judgment.objects.get(item__code=code, labeller=bob).answers == {
        "summary": "years",
        "kind": "concept",
        "dead": True,
        "source_guess": None,  # the optional guess of the source, left unanswered
    }
