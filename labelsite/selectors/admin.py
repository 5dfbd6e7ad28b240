"""Admin reads: progress per campaign and per labeller, and the item mapping (results: selectors.results)."""

from __future__ import annotations

import statistics
from collections import defaultdict

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, Sum

from labelsite.models import Assignment, Campaign, Item, Judgment
from labelsite.services import LabelConflict


def _median_s(values: list[int]) -> float | None:
    return round(statistics.median(values) / 1000, 1) if values else None


def campaign_progress(*, campaign: Campaign) -> dict:
    """Items done, judgments, and per labeller: judged, skipped, held and median seconds per item."""
    items = (
        Item.objects.filter(campaign=campaign)
        .exclude(kind=Item.Kind.JUDGE)
        .aggregate(
            total=Count("pk"),
            complete=Count("pk", filter=Q(judgment_count__gte=F("overlap"))),
            needed=Sum("overlap"),  # an item's own k: every labeller judges each gold item
            repeats=Count("pk", filter=Q(kind=Item.Kind.REPEAT)),
            gold=Count("pk", filter=Q(kind=Item.Kind.GOLD)),
        )
    )
    times: dict[int, list[int]] = defaultdict(list)
    for labeller_id, ms in Judgment.objects.filter(campaign=campaign).values_list("labeller_id", "time_spent_ms"):
        times[labeller_id].append(ms)
    counts: dict[int, dict[str, int]] = defaultdict(lambda: {"done": 0, "held": 0, "skipped": 0})
    for row in Assignment.objects.filter(campaign=campaign).values("labeller_id", "status").annotate(n=Count("pk")):
        counts[row["labeller_id"]][row["status"]] = row["n"]
    member_ids = set(campaign.labellers.values_list("pk", flat=True))
    users = get_user_model().objects.in_bulk(member_ids | set(counts))
    labellers = [
        {
            "user_id": uid,
            "username": users[uid].get_username(),
            "member": uid in member_ids,
            **counts[uid],
            "median_time_s": _median_s(times[uid]),
        }
        for uid in sorted(users, key=lambda u: users[u].get_username())
    ]
    needed = items["needed"] or 0
    judgments = sum(len(v) for v in times.values())
    return {
        "items": items["total"],
        "items_complete": items["complete"],
        "repeat_items": items["repeats"],
        "gold_items": items["gold"],
        "judgments": judgments,
        "judgments_needed": needed,
        "percent": round(100 * judgments / needed) if needed else 0,
        "median_time_s": _median_s([ms for v in times.values() for ms in v]),
        "labellers": labellers,
    }


def campaign_by_ref(ref: str) -> Campaign | None:
    """A campaign by its name, or by its id when no campaign has that name (the commands' CAMPAIGN argument)."""
    campaign = Campaign.objects.filter(name=ref).first()
    if campaign is None and ref.isdigit():
        campaign = Campaign.objects.filter(pk=int(ref)).first()
    return campaign


def require_mapping(campaign: Campaign) -> None:
    if not campaign.mapping_visible:
        raise LabelConflict("This campaign hides which SAE each item came from until it is closed.")


def campaign_items(*, campaign: Campaign, limit: int = 1000) -> list[dict]:
    """Items with their source (SAE, method, feature) when the mapping may be shown, else codes only."""
    fields = ["code", "kind", "judgment_count", "slots_taken", "overlap"]
    if campaign.mapping_visible:
        fields += ["source__sae_id", "source__sae__name", "source__sae__method", "feature_index"]
    return list(Item.objects.filter(campaign=campaign).order_by("code").values(*fields)[:limit])


def campaign_studies(*, campaign: Campaign):
    """The studies that hold any of the campaign's SAEs (as a domain SAE or as their GSAE), by name."""
    from compute.models import Study

    sae_ids = list(campaign.sources.values_list("sae_id", flat=True))
    return Study.objects.filter(Q(saes__in=sae_ids) | Q(gsae_id__in=sae_ids)).distinct().order_by("name")
