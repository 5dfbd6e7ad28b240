"""`{% campaign_judge_section campaign %}`: the LLM judge and prediction-powered section of the results page."""

from __future__ import annotations

from typing import Any

from django import template

from labelsite.selectors.judge_results import judge_results
from labelsite.services import LabelError

register = template.Library()


@register.inclusion_tag("labelsite/manage/results/_judge.html", takes_context=True)
def campaign_judge_section(context, campaign) -> dict[str, Any]:
    try:
        results = judge_results(campaign=campaign)
    except LabelError:
        results = None
    return {"campaign": campaign, "judge": results, "csrf_token": context.get("csrf_token")}
