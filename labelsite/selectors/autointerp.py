"""The campaign's human-vs-automated comparison (compute's selector, limited to this campaign)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from compute.models import Job, JobKind
from compute.selectors.autointerp import autointerp_comparison
from labelsite.models import Campaign, Item
from labelsite.services import LabelError


def campaign_autointerp(*, campaign: Campaign) -> dict[str, Any]:
    """Per source and panel: automated vs human scores on the campaign's features, with this campaign's
    human explanations only. Refused while the source mapping is hidden (it names the SAEs)."""
    if not campaign.mapping_visible:
        raise LabelError("Sources stay hidden until this campaign closes; compare explanations then.")
    features: dict[int, set[int]] = defaultdict(set)
    for sae_id, index in Item.objects.filter(campaign=campaign).values_list("source__sae_id", "feature_index"):
        features[sae_id].add(index)
    return autointerp_comparison(
        sae_ids=list(features),
        corpus_ids=[campaign.domain_corpus_id, campaign.general_corpus_id],
        campaign_id=campaign.pk,
        features=dict(features),
    )


def campaign_autointerp_jobs(*, campaign: Campaign, limit: int = 20):
    return Job.objects.filter(kind=JobKind.AUTOINTERP, params__campaign_id=campaign.pk).order_by("-created_at")[:limit]
