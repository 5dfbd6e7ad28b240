"""The keyboard help opens where the labeller can see it, from anywhere, without eating a typed "?"."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.labelling import ITEM_URL
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_question_mark_opens_visible_help_unless_it_is_being_typed(page, login, console_errors, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=2))
    page.set_viewport_size({"width": 1366, "height": 600})  # the help sits below the fold
    login(bob)
    page.goto(f"/label/c/{campaign.pk}/")
    page.get_by_role("button", name="Start labelling").click()
    page.wait_for_url(ITEM_URL)
    domain = page.locator("fieldset[data-question=domain] textarea")
    keys = page.locator("#keys")
    expect(domain).to_be_focused()
    expect(keys).not_to_be_in_viewport()

    # "?" in the empty first text box (where focus starts): help, scrolled into view; nothing typed
    page.keyboard.press("?")
    expect(keys).to_have_attribute("open", "")
    expect(keys.locator("dl")).to_be_in_viewport()
    assert domain.input_value() == ""
    page.keyboard.press("?")  # again: closed
    expect(keys).not_to_have_attribute("open", "")

    # a "?" that is part of an explanation is typed, not taken for help
    domain.focus()
    page.keyboard.type("why?")
    assert domain.input_value() == "why?"
    expect(keys).not_to_have_attribute("open", "")

    # Alt+/ opens it from inside a text box with text, and keeps the text
    page.evaluate("window.scrollTo(0, 0)")
    domain.focus()
    page.keyboard.press("Alt+Slash")
    expect(keys).to_have_attribute("open", "")
    expect(keys.locator("dl")).to_be_in_viewport()
    assert domain.input_value() == "why?"
    expect(keys).to_contain_text("Alt")
    assert console_errors == []
