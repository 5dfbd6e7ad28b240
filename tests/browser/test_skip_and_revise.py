"""Where a revision or a skip happened is confirmed on the page the labeller lands on; a skip can be undone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labelsite.models import Assignment, Judgment
from tests.browser.labelling import ITEM_URL, item_code, next_item
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_revision_and_skip_are_confirmed_and_a_skip_undone(page, login, console_errors, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=3))
    login(bob)
    page.goto(f"/label/c/{campaign.pk}/")
    page.get_by_role("button", name="Start labelling").click()
    page.wait_for_url(ITEM_URL)
    first = item_code(page)
    page.fill("fieldset[data-question=domain] textarea", "limits")
    for question, score in (("domain", 3), ("general", 1)):
        page.check(f"fieldset[data-question={question}] input[value='{score}']")
    page.keyboard.press("Control+Enter")
    second = next_item(page, first)

    # revise the first with Backspace; saving comes back to the item held, with the confirmation in view
    page.keyboard.press("Escape")
    page.keyboard.press("Backspace")
    page.wait_for_url(re.compile(first))
    expect(page.locator(".item-meta")).to_contain_text("revising your judgment")
    page.locator("fieldset[data-question=domain] input[value='1']").check()
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(second))
    notice = page.locator("#workspace .messages")
    expect(notice).to_contain_text(f"Your judgment of item {first} was revised.")
    expect(notice).to_be_in_viewport()
    assert Judgment.objects.get(item__code=first).answers["domain_score"] == 1

    # skip the second by mistake: the next item says so and offers the undo
    page.keyboard.press("Escape")
    page.keyboard.press("s")
    page.keyboard.type("pressed s by mistake")
    page.keyboard.press("Enter")
    next_item(page, second)
    undo = page.locator(".undo-skip")
    expect(undo).to_contain_text(f"You skipped item {second}")
    expect(undo).to_be_in_viewport()
    undo.get_by_role("button", name="Undo skip").click()
    page.wait_for_url(re.compile(second))
    expect(page.locator(".messages")).to_contain_text(f"Skip undone: item {second}")
    assert Assignment.objects.get(item__code=second, labeller=bob).status == Assignment.Status.EXPIRED
    assert console_errors == []
