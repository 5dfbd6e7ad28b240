"""`{% campaign_autointerp campaign %}`: the human-vs-automated section of a campaign's results page."""

from __future__ import annotations

from typing import Any

from django import template

from labelsite.selectors.autointerp import campaign_autointerp
from labelsite.services import LabelError

register = template.Library()


@register.inclusion_tag("labelsite/manage/results/_autointerp.html")
def campaign_autointerp_section(campaign) -> dict[str, Any]:
    try:
        comparison = campaign_autointerp(campaign=campaign)
    except LabelError:
        comparison = None
    return {"campaign": campaign, "comparison": comparison}
