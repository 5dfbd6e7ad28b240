"""Prediction-powered results: the LLM judge's scores combined with the labellers' (PPI++), per source and
score question, and for every pair of sources; unblinded, so admins only, hidden while the mapping is.

A feature's human score is the mean of its labellers' scores (features are the unit, as in the results).
Features humans scored with a judge score are the labelled sample; features only the judge scored (judge-only
items, or regular items no one has judged yet) are the unlabelled one. The estimate is valid whatever the
judge's quality when the labelled features are a random share of all the judge scored (random sampling).
The statistics are `labelsite.statistics`' (`ppi_mean`, `ppi_difference`, `judge_agreement`).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from labelsite import statistics as st
from labelsite.models import Campaign, Item, JudgeAnswer
from labelsite.questions import choice_questions, score_questions
from labelsite.selectors.admin import require_mapping
from labelsite.selectors.results import judgment_table, source_labels


def _judge_table(campaign: Campaign) -> tuple[dict[int, tuple[int, dict]], list[str]]:
    """Per judged item: (source id, the judge's answers); and the models that answered."""
    rows = JudgeAnswer.objects.filter(campaign=campaign, item__kind__in=[Item.Kind.REGULAR, Item.Kind.JUDGE])
    answers, models = {}, set()
    for item_id, source_id, data, model in rows.values_list("item_id", "item__source_id", "answers", "model"):
        answers[item_id] = (source_id, data or {})
        models.add(model)
    return answers, sorted(models)


def _score_samples(human: dict[int, float], judge: dict[int, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(human, judge) on the features both scored, and the judge's scores of the features no human scored."""
    both = sorted(set(human) & set(judge))
    judge_only = sorted(set(judge) - set(human))
    return (
        np.array([human[i] for i in both], dtype=float),
        np.array([judge[i] for i in both], dtype=float),
        np.array([judge[i] for i in judge_only], dtype=float),
    )


def _score_section(question: dict, table, judged: dict, sources: dict[int, dict], level: float) -> dict:
    key = question["key"]
    mask, answered = table.values(key)
    values = np.array(answered, dtype=float)
    items, src = table.item[mask], table.source[mask]
    samples, per_source = {}, []
    for sid, info in sources.items():
        here = src == sid
        features, means = st.unit_means(values[here], items[here])
        human = dict(zip(features.tolist(), means.tolist(), strict=True))
        judge = {i: float(a[key]) for i, (s, a) in judged.items() if s == sid and isinstance(a.get(key), int | float)}
        samples[sid] = _score_samples(human, judge)
        estimate = st.ppi_mean(*samples[sid], level=level, small_sample=True)
        per_source.append(
            {
                "source": info["label"],
                "source_id": sid,
                "judged_features": len(judge),
                **estimate.as_dict(),
                "agreement": st.judge_agreement(samples[sid][1], samples[sid][0]),
            }
        )
    differences = []
    for a, b in combinations(sorted(sources), 2):
        diff = st.ppi_difference(samples[a], samples[b], level=level, small_sample=True)
        differences.append({"a": sources[a]["label"], "b": sources[b]["label"], **diff.as_dict()})
    return {"key": key, "prompt": question["prompt"], "per_source": per_source, "differences": differences}


def _choice_section(question: dict, table, judged: dict, sources: dict[int, dict]) -> dict:
    """Per source, how often the judge and the labellers chose each option (shares of their answers)."""
    key, options = question["key"], [o["value"] for o in question["options"]]
    mask, answered = table.values(key)
    src = table.source[mask]
    per_source = []
    for sid, info in sources.items():
        human = [v for v, s in zip(answered, src, strict=True) if s == sid]
        judge = [a.get(key) for s, a in judged.values() if s == sid and a.get(key) is not None]
        per_source.append(
            {
                "source": info["label"],
                "options": [
                    {
                        "value": o,
                        "human_share": round(human.count(o) / len(human), 4) if human else None,
                        "judge_share": round(judge.count(o) / len(judge), 4) if judge else None,
                    }
                    for o in options
                ],
                "human_answers": len(human),
                "judge_answers": len(judge),
            }
        )
    return {"key": key, "prompt": question["prompt"], "per_source": per_source}


def judge_results(*, campaign: Campaign, level: float = st.DEFAULT_LEVEL) -> dict:
    """The judge's answers beside the labellers': per score question and source the human-only, judge-only and
    prediction-powered means with intervals, the effective number of human-scored features, the judge–human
    agreement, and the prediction-powered difference of every pair of sources; per choice question the
    shares of each option. Raises LabelError while the campaign hides its mapping."""
    require_mapping(campaign)
    judged, models = _judge_table(campaign)
    sources = source_labels(campaign)
    everything = judgment_table(campaign=campaign)
    table = everything.only(everything.kind == Item.Kind.REGULAR)
    return {
        "judged_items": len(judged),
        "judge_only_items": Item.objects.filter(campaign=campaign, kind=Item.Kind.JUDGE).count(),
        "models": models,
        "level": level,
        "scores": [_score_section(q, table, judged, sources, level) for q in score_questions(campaign.questions)]
        if judged
        else [],
        "choices": [_choice_section(q, table, judged, sources) for q in choice_questions(campaign.questions)]
        if judged
        else [],
    }


def pilot_inputs(*, campaign: Campaign, question_key: str) -> dict:
    """What the planner needs, measured on a pilot campaign's regular judgments of one score question: the
    spread of features' scores and of labellers around them (`statistics.variance_components`), and, where the
    judge answered, its Pearson correlation with the human mean scores and the labellers per feature it was
    measured at. Raises LabelError when the question is not a score question or nothing was judged."""
    from labelsite.services import LabelError

    if question_key not in {q["key"] for q in score_questions(campaign.questions)}:
        raise LabelError(f"{question_key!r} is not a score question of this campaign.")
    everything = judgment_table(campaign=campaign)
    table = everything.only(everything.kind == Item.Kind.REGULAR)
    mask, answered = table.values(question_key)
    if not mask.any():
        raise LabelError(f"No judgments of {question_key!r} yet: a pilot needs some.")
    values, items = np.array(answered, dtype=float), table.item[mask]
    out = {"pilot": st.variance_components(values, items), "rho": None, "rho_labellers": None, "rho_features": 0}
    features, means = st.unit_means(values, items)
    judged, _ = _judge_table(campaign)
    pairs = [(m, judged[f][1][question_key]) for f, m in zip(features.tolist(), means.tolist(), strict=True)
             if f in judged and isinstance(judged[f][1].get(question_key), int | float)]  # fmt: skip
    if len(pairs) >= 3:
        human, judge = np.array(pairs, dtype=float).T
        if np.std(human) > 0 and np.std(judge) > 0:
            out["rho"] = float(np.corrcoef(human, judge)[0, 1])
            counts = np.unique(items[np.isin(items, [f for f in features if f in judged])], return_counts=True)[1]
            out["rho_labellers"] = float(counts.mean())
        out["rho_features"] = len(pairs)
    return out
