"""Steps a labeller takes in the browser, shared by the labelling tests."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from labelsite.models import Item
from labelsite.services.assignment import assignment_next
from labelsite.services.judgments import judgment_submit

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


def judge_all(campaign, users) -> None:
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
