"""Reads for the human-vs-automated comparison: per source (SAE) and corpus, per feature, and where they disagree.

Scores are balanced accuracies (0.5 = chance). A feature's automated score is the mean over its
automated explanations (one per explainer model); its human score the mean over its human
explanations (one per labeller), each explanation's score being the mean of detection and fuzzing
where both exist. Rank correlations are Spearman's (scipy), over features that have both.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from statistics import fmean
from typing import Any

from django.db.models import Q
from django.urls import reverse

from compute.models import SAE, Corpus, Explanation, ExplanationScore

METHODS = ("detection", "fuzzing")
EXPORT_FIELDS = [
    "sae",
    "method",
    "corpus",
    "corpus_kind",
    "feature_index",
    "auto_explanation",
    "auto_detection",
    "auto_fuzzing",
    "human_explanations",
    "human_detection",
    "human_fuzzing",
    "human_specificity",
    "dashboard_url",
]


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def _spearman(xs: list[float], ys: list[float]) -> dict[str, Any] | None:
    """Spearman's rho with its p-value, None with fewer than 3 features or a constant side."""
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    result = spearmanr(xs, ys)
    rho, p = float(result.statistic), float(result.pvalue)
    return {"rho": rho, "p": p, "n": len(xs)} if not math.isnan(rho) else None


def _constant_answer(*, tp: int, fp: int, tn: int, fn: int) -> str:
    """ "yes" or "no" when the scorer gave that answer to every sample of a score (its balanced accuracy is
    then 0.5 whatever the explanation), else ""."""
    if tp + fp + tn + fn == 0:
        return ""
    if tp + fp == 0:
        return "no"
    if tn + fn == 0:
        return "yes"
    return ""


def left_out(result: dict[str, Any] | None) -> list[str]:
    """Why an autointerp job explained fewer features than it was given, from its stats (`Job.result` or the
    progress stats of a running job): one phrase per reason."""
    if not result:
        return []
    reasons = {
        "silent": "never fire on this corpus (nothing to explain from)",
        "refused": "got no usable explanation (the explainer's answers were refused as non-explanations)",
        "skipped": "already had an explanation from this model (kept, not redone)",
    }
    return [f"{result[key]:,} {text}" for key, text in reasons.items() if result.get(key)]


def _feature_rows(
    *, sae_ids: list[int], corpus_ids: list[int] | None, campaign_id: int | None, features: dict[int, set[int]] | None
) -> dict[tuple[int, int, int], dict[str, Any]]:
    """(sae id, corpus id, feature index) -> explanations and scores of that feature."""
    explanations = Explanation.objects.filter(feature__dashboard_set__sae_id__in=sae_ids).select_related(
        "feature__dashboard_set"
    )
    if corpus_ids is not None:
        explanations = explanations.filter(feature__dashboard_set__corpus_id__in=corpus_ids)
    if campaign_id is not None:
        # This campaign's human explanations; automated ones of the same features whoever asked for them.
        explanations = explanations.filter(
            Q(source=Explanation.Source.AUTO) | Q(source=Explanation.Source.HUMAN, campaign_id=campaign_id)
        )
    scores: dict[int, dict[str, float]] = defaultdict(dict)
    constant: dict[int, dict[str, str]] = defaultdict(dict)
    for explanation_id, method, value, tp, fp, tn, fn in ExplanationScore.objects.filter(
        explanation__in=explanations
    ).values_list("explanation_id", "method", "balanced_accuracy", "tp", "fp", "tn", "fn"):
        scores[explanation_id][method] = value
        answer = _constant_answer(tp=tp, fp=fp, tn=tn, fn=fn)
        if answer:
            constant[explanation_id][method] = answer
    rows: dict[tuple[int, int, int], dict[str, Any]] = {}
    for e in explanations.order_by("id"):
        dset = e.feature.dashboard_set
        key = (dset.sae_id, dset.corpus_id, e.feature.feature_index)
        if features is not None and e.feature.feature_index not in features.get(dset.sae_id, set()):
            continue
        row = rows.setdefault(key, {"auto": [], "human": []})
        row[e.source].append(
            {
                "text": e.text,
                "scores": scores.get(e.pk, {}),
                "constant": constant.get(e.pk, {}),
                "human_score": e.human_score,
            }
        )
    return rows


def _method_mean(entries: list[dict[str, Any]], method: str) -> float | None:
    return _mean([x["scores"][method] for x in entries if method in x["scores"]])


def _overall(entries: list[dict[str, Any]]) -> float | None:
    per = [_mean([x["scores"][m] for m in METHODS if m in x["scores"]]) for x in entries]
    return _mean([v for v in per if v is not None])


def autointerp_comparison(
    *,
    sae_ids: list[int],
    corpus_ids: list[int] | None = None,
    campaign_id: int | None = None,
    features: dict[int, set[int]] | None = None,
    n_disagree: int = 10,
) -> dict[str, Any]:
    """Per source and corpus: automated and human detection/fuzzing, human specificity, rank correlations,
    and the features where automated and human explanations disagree most (with dashboard links).

    `features` limits each SAE to some feature indices (a campaign's items); `campaign_id` limits human
    explanations to that campaign's.
    """
    rows = _feature_rows(sae_ids=sae_ids, corpus_ids=corpus_ids, campaign_id=campaign_id, features=features)
    saes = {s.pk: s for s in SAE.objects.filter(pk__in=sae_ids)}
    corpora = {c.pk: c for c in Corpus.objects.filter(pk__in={k[1] for k in rows})}
    groups: dict[tuple[int, int], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for (sae_id, corpus_id, index), row in sorted(rows.items()):
        groups[(sae_id, corpus_id)].append((index, row))

    sources = []
    feature_rows = []
    for (sae_id, corpus_id), members in sorted(groups.items(), key=lambda kv: (saes[kv[0][0]].name, kv[0][1])):
        sae, corpus = saes[sae_id], corpora[corpus_id]
        specificity, disagree, explained = [], [], []
        n_scores, constant_answers = 0, Counter()
        paired_auto, paired_human, spec_x, spec_y = [], [], [], []
        for index, row in members:
            auto, human = _overall(row["auto"]), _overall(row["human"])
            spec = _mean([x["human_score"] for x in row["human"] if x["human_score"] is not None])
            url = reverse("compute:feature-dashboard", args=[sae_id, corpus_id, index])
            if auto is not None and human is not None:
                paired_auto.append(auto)
                paired_human.append(human)
                disagree.append(
                    {
                        "feature_index": index,
                        "auto": auto,
                        "human": human,
                        "gap": auto - human,
                        "auto_text": "; ".join(x["text"] for x in row["auto"]),
                        "human_text": "; ".join(x["text"] for x in row["human"]),
                        "url": url,
                    }
                )
            if auto is not None and spec is not None:
                spec_x.append(spec)
                spec_y.append(auto)
            if spec is not None:
                specificity.append(spec)
            for entry in [*row["auto"], *row["human"]]:
                n_scores += len(entry["scores"])
                constant_answers.update(entry["constant"].values())
            if row["auto"]:
                explained.append(
                    {
                        "feature_index": index,
                        "url": url,
                        "auto": row["auto"],
                        "human_text": " | ".join(x["text"] for x in row["human"]),
                    }
                )
            feature_rows.append(
                {
                    "sae": sae.name,
                    "method": sae.method,
                    "corpus": corpus.name,
                    "corpus_kind": corpus.kind,
                    "feature_index": index,
                    "auto_explanation": " | ".join(x["text"] for x in row["auto"]),
                    "auto_detection": _method_mean(row["auto"], "detection"),
                    "auto_fuzzing": _method_mean(row["auto"], "fuzzing"),
                    "human_explanations": " | ".join(x["text"] for x in row["human"]),
                    "human_detection": _method_mean(row["human"], "detection"),
                    "human_fuzzing": _method_mean(row["human"], "fuzzing"),
                    "human_specificity": spec,
                    "dashboard_url": url,
                }
            )
        per_feature = [fr for fr in feature_rows if fr["sae"] == sae.name and fr["corpus"] == corpus.name]
        disagree.sort(key=lambda d: (-abs(d["gap"]), d["feature_index"]))
        sources.append(
            {
                "sae_id": sae_id,
                "sae": sae.name,
                "method": sae.get_method_display(),
                "corpus": corpus.name,
                "corpus_kind": corpus.get_kind_display(),
                "n_features": len(members),
                "n_auto": sum(1 for r in per_feature if r["auto_explanation"]),
                "n_human": sum(1 for r in per_feature if r["human_explanations"]),
                "auto_detection": _mean([v for r in per_feature if (v := r["auto_detection"]) is not None]),
                "auto_fuzzing": _mean([v for r in per_feature if (v := r["auto_fuzzing"]) is not None]),
                "human_detection": _mean([v for r in per_feature if (v := r["human_detection"]) is not None]),
                "human_fuzzing": _mean([v for r in per_feature if (v := r["human_fuzzing"]) is not None]),
                "human_specificity": _mean(specificity),
                "rho_human_vs_auto": _spearman(paired_human, paired_auto),
                "rho_specificity_vs_auto": _spearman(spec_x, spec_y),
                "disagree": disagree[:n_disagree],
                "explained": explained,
                "n_scores": n_scores,
                "n_constant": sum(constant_answers.values()),
                # every score came from one repeated answer: the scorer measured nothing
                "degenerate": dict(constant_answers)
                if n_scores and sum(constant_answers.values()) == n_scores
                else None,
            }
        )
    return {"sources": sources, "features": feature_rows}
