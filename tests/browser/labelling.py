"""Steps a labeller takes in the browser, shared by the labelling tests."""

from __future__ import annotations

import re

from playwright.sync_api import expect

ITEM_URL = re.compile(r"/label/i/[\w-]+/$")


def item_code(page) -> str:
    """The code of the item on the page."""
    return page.url.rstrip("/").rsplit("/", 1)[1]


def next_item(page, previous: str) -> str:
    """Wait until the page moved on from item `previous`; the new item's code."""
    page.wait_for_function("code => !location.pathname.includes(code)", arg=previous)
    expect(page.locator("#workspace")).not_to_have_attribute("data-item", previous)
    # the new item's first text box has the focus: ready for typing
    expect(page.locator("fieldset[data-question=domain] textarea")).to_be_focused()
    return item_code(page)


def fill_campaign_form(page, registry, labeller, *, name: str, features: str) -> None:
    """The new-campaign form filled with every SAE of `registry`, its two corpora and one labeller."""
    page.fill("#id_name", name)
    for sae in registry.saes:
        page.get_by_label(sae.name, exact=False).check()
    page.get_by_label("Subject text (domain corpus)").select_option(str(registry.domain.pk))
    page.get_by_label("Everyday text (general corpus)").select_option(str(registry.general.pk))
    page.get_by_label(labeller.username, exact=True).check()
    page.fill("#id_features_per_sae", features)
