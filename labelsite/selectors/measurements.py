"""What the platform measured about each judged feature of a campaign (for "measured vs rated").

Frequencies on the domain and the general corpus, and max cosines to the GSAE, come from the study's
per-feature measurements when a study measured the SAE; frequencies missing there are taken from the
campaign's dashboards (built on the campaign's own corpora), so a campaign always has them.
"""

from __future__ import annotations

from collections import defaultdict

from compute.models import DashboardSet, FeatureDashboard
from compute.selectors.measurements import feature_measurements
from labelsite import statistics as st
from labelsite.models import Campaign, Item

MEASURES = ("freq_domain", "freq_general", "max_cos_decoder", "max_cos_encoder")


def _dashboard_frequencies(sae_id: int, corpus_id: int, indices: list[int]) -> dict[int, float]:
    sets = DashboardSet.objects.filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY)
    return dict(
        FeatureDashboard.objects.filter(dashboard_set__in=sets, feature_index__in=indices).values_list(
            "feature_index", "frequency"
        )
    )


def campaign_feature_measurements(*, campaign: Campaign, sources: dict[int, dict]) -> dict[int, list]:
    """{source id: [(feature index, item id, {freq_domain, freq_general, log_odds, max_cos_decoder,
    max_cos_encoder})]} for every regular item of the campaign; None where nothing measured it."""
    items = defaultdict(list)
    for source_id, index, item_id in (
        Item.objects.filter(campaign=campaign, kind=Item.Kind.REGULAR)
        .order_by("feature_index")
        .values_list("source_id", "feature_index", "pk")
    ):
        items[source_id].append((index, item_id))
    out = {}
    for sid, info in sources.items():
        indices = [index for index, _ in items.get(sid, [])]
        if not indices:
            continue
        study = feature_measurements(info["sae_id"], indices)
        domain = _dashboard_frequencies(info["sae_id"], campaign.domain_corpus_id, indices)
        general = _dashboard_frequencies(info["sae_id"], campaign.general_corpus_id, indices)
        rows = []
        for index, item_id in items[sid]:
            m = {key: (study.get(index) or {}).get(key) for key in MEASURES}
            if m["freq_domain"] is None:
                m["freq_domain"] = domain.get(index)
            if m["freq_general"] is None:
                m["freq_general"] = general.get(index)
            known = m["freq_domain"] is not None and m["freq_general"] is not None
            m["log_odds"] = float(st.log_odds_ratio(m["freq_domain"], m["freq_general"])) if known else None
            rows.append((index, item_id, m))
        out[sid] = rows
    return out
