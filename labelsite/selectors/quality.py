"""A campaign's quality control (admins, mapping visible): each labeller's self-agreement on repeated items and
their accuracy on gold items, per question that can be checked (score, yes/no, choice).

A repeat's judgment is paired with the same labeller's judgment of its original (their answers as they stand
now). Repeats and gold items are part of no other figure: `labelsite.selectors.results` keeps regular items only.
"""

from __future__ import annotations

from collections import defaultdict

from labelsite import statistics as st
from labelsite.models import Campaign, Item, Judgment
from labelsite.questions import SCORE, checkable_questions

ALL = "all labellers"


def _repeat_pairs(campaign: Campaign) -> list[tuple[int, dict, dict]]:
    """(labeller id, answers to the original, answers to the repeat) for every judged repeat."""
    repeats = list(
        Judgment.objects.filter(campaign=campaign, item__kind=Item.Kind.REPEAT)
        .order_by("pk")
        .values_list("labeller_id", "item__repeat_of_id", "answers")
    )
    firsts = {
        (item_id, labeller_id): answers
        for item_id, labeller_id, answers in Judgment.objects.filter(
            item_id__in={original for _, original, _ in repeats}
        ).values_list("item_id", "labeller_id", "answers")
    }
    return [(uid, firsts[(original, uid)], answers) for uid, original, answers in repeats if (original, uid) in firsts]


def _per_labeller(rows: list[tuple[int, object]], names: dict[int, str], summarise) -> dict:
    """`summarise(entries)` of each labeller's entries, by name, and of all of them pooled."""
    by_labeller = defaultdict(list)
    for uid, entry in rows:
        by_labeller[uid].append(entry)
    labellers = [
        {"labeller": names.get(uid, str(uid)), **summarise(entries)}
        for uid, entries in sorted(by_labeller.items(), key=lambda kv: names.get(kv[0], ""))
    ]
    return {"labellers": labellers, "all": {"labeller": ALL, **summarise([e for _, e in rows])}}


def campaign_quality(*, campaign: Campaign, names: dict[int, str], n_resamples: int, seed: int) -> dict:
    """Self-agreement (repeats) and gold accuracy per question, per labeller and pooled."""
    questions = checkable_questions(campaign.questions)
    pairs = _repeat_pairs(campaign)
    gold = list(
        Judgment.objects.filter(campaign=campaign, item__kind=Item.Kind.GOLD)
        .order_by("pk")
        .values_list("labeller_id", "item__expected_answers", "answers")
    )
    self_agreement, accuracy = [], []
    for q in questions:
        key, head = q["key"], {"key": q["key"], "prompt": q["prompt"], "type": q["type"]}
        levels = [int(level["score"]) for level in q["rubric"]] if q["type"] == SCORE else None

        def agreement(entries, levels=levels) -> dict:
            return st.self_agreement(
                [a for a, _ in entries], [b for _, b in entries], levels=levels, n_resamples=n_resamples, seed=seed
            )

        if pairs:
            answered = [
                (uid, (a[key], b[key])) for uid, a, b in pairs if a.get(key) is not None and b.get(key) is not None
            ]
            self_agreement.append(head | _per_labeller(answered, names, agreement))
        checked = [(uid, answers.get(key) == expected[key]) for uid, expected, answers in gold if key in expected]
        if checked:
            accuracy.append(head | _per_labeller(checked, names, _accuracy))
    return {
        "repeat_items": Item.objects.filter(campaign=campaign, kind=Item.Kind.REPEAT).count(),
        "repeat_pairs": len(pairs),
        "gold_items": Item.objects.filter(campaign=campaign, kind=Item.Kind.GOLD).count(),
        "gold_judgments": len(gold),
        "self_agreement": self_agreement,
        "gold": accuracy,
    }


def _accuracy(hits: list[bool]) -> dict:
    return {"n": len(hits), "correct": sum(hits), "share": round(sum(hits) / len(hits), 4) if hits else None}
