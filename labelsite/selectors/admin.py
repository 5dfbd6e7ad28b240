"""Admin reads: progress per campaign and per labeller, item mapping, and score breakdowns."""

from __future__ import annotations

import statistics
from collections import defaultdict
from itertools import combinations

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q

from labelsite.models import Assignment, Campaign, Item, Judgment
from labelsite.questions import choice_questions, export_columns, score_questions, yesno_questions
from labelsite.services import LabelConflict


def _median_s(values: list[int]) -> float | None:
    return round(statistics.median(values) / 1000, 1) if values else None


def campaign_progress(*, campaign: Campaign) -> dict:
    """Items done, judgments, and per labeller: judged, skipped, held and median seconds per item."""
    items = Item.objects.filter(campaign=campaign).aggregate(
        total=Count("pk"), complete=Count("pk", filter=Q(judgment_count__gte=F("overlap")))
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
    needed = items["total"] * campaign.overlap
    judgments = sum(len(v) for v in times.values())
    return {
        "items": items["total"],
        "items_complete": items["complete"],
        "judgments": judgments,
        "judgments_needed": needed,
        "percent": round(100 * judgments / needed) if needed else 0,
        "median_time_s": _median_s([ms for v in times.values() for ms in v]),
        "labellers": labellers,
    }


def require_mapping(campaign: Campaign) -> None:
    if not campaign.mapping_visible:
        raise LabelConflict("This campaign hides which SAE each item came from until it is closed.")


def campaign_items(*, campaign: Campaign, limit: int = 1000) -> list[dict]:
    """Items with their source (SAE, method, feature) when the mapping may be shown, else codes only."""
    fields = ["code", "judgment_count", "slots_taken"]
    if campaign.mapping_visible:
        fields += ["source__sae_id", "source__sae__name", "source__sae__method", "feature_index"]
    return list(Item.objects.filter(campaign=campaign).order_by("code").values(*fields)[:limit])


EXPORT_HEAD = ("item_code", "sae", "method", "feature_index", "labeller")
EXPORT_TAIL = ("time_spent_ms", "revisions", "created_at", "updated_at")


def export_fields(campaign: Campaign) -> list[str]:
    """Columns of a judgment export: the item and its source, one column per question, then bookkeeping."""
    return [*EXPORT_HEAD, *export_columns(campaign.questions), *EXPORT_TAIL]


def judgment_rows(*, campaign: Campaign) -> list[dict]:
    """One row per judgment with its source revealed (admins only, mapping visible), keyed by export_fields."""
    require_mapping(campaign)
    keys = export_columns(campaign.questions)
    rows = (
        Judgment.objects.filter(campaign=campaign)
        .order_by("item__source__sae__name", "item__feature_index", "labeller__username")
        .values_list(
            "item__code",
            "item__source__sae__name",
            "item__source__sae__method",
            "item__feature_index",
            "labeller__username",
            "answers",
            *EXPORT_TAIL,
        )
    )
    out = []
    for row in rows:
        answers = row[5]
        out.append(
            {
                **dict(zip(EXPORT_HEAD, row[:5], strict=True)),
                **{k: answers.get(k) for k in keys},
                **dict(zip(EXPORT_TAIL, row[6:], strict=True)),
            }
        )
    return out


def _score_stats(values: list[int], levels: list[int]) -> dict:
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 3) if values else None,
        "counts": {str(level): values.count(level) for level in levels},
    }


def krippendorff_alpha_interval(units: list[list[float]]) -> float | None:
    """Krippendorff's alpha with the interval metric; units with fewer than 2 values are not pairable."""
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    if n < 2:
        return None
    observed = sum(sum((a - b) ** 2 for a, b in combinations(u, 2)) * 2 / (len(u) - 1) for u in pairable) / n
    expected = sum((a - b) ** 2 for a, b in combinations(values, 2)) * 2 / (n * (n - 1))
    if expected == 0:
        return None
    return round(1 - observed / expected, 4)


def agreement(scores_by_item: dict[str, list[int]]) -> dict:
    """Pairwise exact and within-one agreement and Krippendorff's alpha over items judged at least twice."""
    pairs = [(a, b) for vals in scores_by_item.values() for a, b in combinations(vals, 2)]
    return {
        "items": sum(1 for v in scores_by_item.values() if len(v) >= 2),
        "pairs": len(pairs),
        "exact": round(sum(a == b for a, b in pairs) / len(pairs), 4) if pairs else None,
        "within_one": round(sum(abs(a - b) <= 1 for a, b in pairs) / len(pairs), 4) if pairs else None,
        "krippendorff_alpha_interval": krippendorff_alpha_interval(list(scores_by_item.values())),
    }


def score_summary(*, campaign: Campaign) -> dict:
    """Breakdowns per SAE, per method and per labeller of every score, yes/no and choice question;
    agreement figures per score question when k >= 2."""
    rows = judgment_rows(campaign=campaign)
    scored, flags, choices = (
        score_questions(campaign.questions),
        yesno_questions(campaign.questions),
        choice_questions(campaign.questions),
    )
    groups: dict[str, dict[str, list[dict]]] = {"sae": defaultdict(list), "method": defaultdict(list)}
    groups["labeller"] = defaultdict(list)
    for row in rows:
        for key in groups:
            groups[key][row[key]].append(row)

    def describe(group_rows: list[dict]) -> dict:
        out = {"judgments": len(group_rows), "items": len({r["item_code"] for r in group_rows})}
        for q in flags:
            out[q["key"]] = sum(bool(r[q["key"]]) for r in group_rows)
        for q in scored:
            levels = [level["score"] for level in q["rubric"]]
            out[q["key"]] = _score_stats([r[q["key"]] for r in group_rows if r[q["key"]] is not None], levels)
        for q in choices:
            values = [r[q["key"]] for r in group_rows if r[q["key"]] is not None]
            out[q["key"]] = {"n": len(values), "counts": {o["value"]: values.count(o["value"]) for o in q["options"]}}
        return out

    summary = {
        "campaign": campaign.name,
        "overlap": campaign.overlap,
        "questions": campaign.questions,
        "per_sae": {k: describe(v) for k, v in sorted(groups["sae"].items())},
        "per_method": {k: describe(v) for k, v in sorted(groups["method"].items())},
        "per_labeller": {k: describe(v) for k, v in sorted(groups["labeller"].items())},
    }
    if campaign.overlap >= 2:
        summary["agreement"] = {}
        for q in scored:
            by_item: dict[str, list[int]] = defaultdict(list)
            for row in rows:
                if row[q["key"]] is not None:
                    by_item[row["item_code"]].append(row[q["key"]])
            summary["agreement"][q["key"]] = agreement(by_item)
    return summary
