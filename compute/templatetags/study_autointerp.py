"""`{% study_autointerp_section study %}`: the human-vs-automated comparison on a study's page;
`{{ job|autointerp_left_out }}`: why an autointerp job explained fewer features than it was given."""

from __future__ import annotations

from typing import Any

from django import template

from compute.selectors.autointerp import autointerp_comparison, left_out

register = template.Library()


@register.inclusion_tag("compute/_study_autointerp.html", takes_context=True)
def study_autointerp_section(context, study) -> dict[str, Any]:
    sae_ids = [study.gsae_id, *study.saes.values_list("pk", flat=True)]
    comparison = autointerp_comparison(sae_ids=sae_ids, corpus_ids=[study.domain_corpus_id, study.general_corpus_id])
    return {"study": study, "comparison": comparison, "csrf_token": context.get("csrf_token")}


@register.filter
def autointerp_left_out(job) -> str:
    """The reasons features of this job got no explanation, as one sentence ("" when none was left out)."""
    reasons = left_out(job.result or job.stats)
    return f"Left out: {'; '.join(reasons)}." if reasons else ""
