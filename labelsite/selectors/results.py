"""A campaign's results, unblinded (admins, mapping visible): every figure the results page, the breakdown
exports and the API show, derived from the campaign's questions. Every breakdown, mean, comparison,
agreement and measured-vs-rated figure counts regular items only; repeats and gold items make the quality
control section (`labelsite.selectors.quality`).

Score questions get means with bootstrap intervals (features, and labellers when k >= 2, resampled),
distributions, labeller-adjusted means, pairwise source comparisons and agreement; yes/no questions
(e.g. "nice") get counts and shares; choice questions get counts and nominal agreement. The statistics
themselves live in `labelsite.statistics` (pure); this module only reads the database and arranges.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Max, Sum

from labelsite import questions as schema
from labelsite import statistics as st
from labelsite.models import Assignment, Campaign, CampaignSAE, Item, Judgment
from labelsite.selectors.admin import require_mapping

ORDINAL_WEIGHTS = "quadratic"  # weighted Cohen's kappa for rubric scores


@dataclass
class JudgmentTable:
    """The campaign's judgments as parallel arrays (one entry per judgment) plus their answers."""

    item: np.ndarray  # item id
    source: np.ndarray  # CampaignSAE id
    labeller: np.ndarray  # user id
    time_ms: np.ndarray
    answers: list[dict]
    kind: np.ndarray  # the item's kind (Item.Kind)

    def __len__(self) -> int:
        return len(self.item)

    def only(self, mask: np.ndarray) -> JudgmentTable:
        """The judgments where `mask` is true."""
        return JudgmentTable(
            item=self.item[mask],
            source=self.source[mask],
            labeller=self.labeller[mask],
            time_ms=self.time_ms[mask],
            answers=[a for a, m in zip(self.answers, mask, strict=True) if m],
            kind=self.kind[mask],
        )

    def values(self, key: str) -> tuple[np.ndarray, list]:
        """(mask of judgments that answered `key`, the answers in that order)."""
        found = [a.get(key) for a in self.answers]
        mask = np.array([v is not None and v != "" for v in found], dtype=bool)
        return mask, [v for v, m in zip(found, mask, strict=True) if m]


def judgment_table(*, campaign: Campaign) -> JudgmentTable:
    rows = Judgment.objects.filter(campaign=campaign).order_by("pk")
    item, source, labeller, time_ms, answers, kind = [], [], [], [], [], []
    for item_id, source_id, labeller_id, ms, ans, item_kind in rows.values_list(
        "item_id", "item__source_id", "labeller_id", "time_spent_ms", "answers", "item__kind"
    ).iterator(chunk_size=5000):
        item.append(item_id)
        source.append(source_id)
        labeller.append(labeller_id)
        time_ms.append(ms)
        answers.append(ans or {})
        kind.append(item_kind)
    return JudgmentTable(
        item=np.array(item, dtype=np.int64),
        source=np.array(source, dtype=np.int64),
        labeller=np.array(labeller, dtype=np.int64),
        time_ms=np.array(time_ms, dtype=np.int64),
        answers=answers,
        kind=np.array(kind, dtype=str),
    )


def source_labels(campaign: Campaign) -> dict[int, dict]:
    """Per source id: its SAE, method and a display label."""
    out = {}
    for source in CampaignSAE.objects.filter(campaign=campaign).select_related("sae").order_by("pk"):
        out[source.pk] = {
            "id": source.pk,
            "sae_id": source.sae_id,
            "sae": source.sae.name,
            "method": source.sae.method,
            "method_label": source.sae.get_method_display(),
            "label": f"{source.sae.name} ({source.sae.get_method_display()})",
        }
    return out


def _questions(campaign: Campaign, kind: str) -> list[dict]:
    """The study's questions of a type (the source guess has a section of its own: `_blinding`)."""
    return [q for q in campaign.questions if q["type"] == kind and q["key"] != schema.GUESS_KEY]


def _levels(question: dict) -> list[int]:
    return [int(level["score"]) for level in question["rubric"]]


def _score_section(
    table: JudgmentTable, question: dict, sources: dict[int, dict], *, n_resamples: int, seed: int
) -> dict:
    mask, answered = table.values(question["key"])
    values = np.array(answered, dtype=float)
    items, src, raters = table.item[mask], table.source[mask], table.labeller[mask]
    levels = _levels(question)
    per_source, feature_means = {}, {}
    for sid, info in sources.items():
        here = src == sid
        per_source[info["label"]] = {
            "source_id": sid,
            "estimate": st.bootstrap_mean(
                values[here], items[here], raters[here], n_resamples=n_resamples, seed=seed
            ).as_dict(),
            "distribution": st.distribution(values[here], levels),
        }
        if here.any():
            feature_means[sid] = st.unit_means(values[here], items[here])
    adjusted = (
        st.adjusted_means(values, [sources[s]["label"] for s in src], raters) if len(set(raters.tolist())) >= 2 else {}
    )
    for label, entry in per_source.items():
        entry["adjusted_mean"] = adjusted.get(label)
    comparisons = []
    for a, b in combinations(sorted(feature_means), 2):
        result = st.compare(feature_means[a][1], feature_means[b][1], n_resamples=n_resamples, seed=seed)
        comparisons.append(
            {
                "a": sources[a]["label"],
                "b": sources[b]["label"],
                **result.as_dict(),
                "below_minimum": min(result.n_a, result.n_b) < st.MIN_FEATURES,
            }
        )
    return {
        "key": question["key"],
        "prompt": question["prompt"],
        "panel": question.get("panel"),
        "levels": [{"score": int(level["score"]), "label": level["label"]} for level in question["rubric"]],
        "judgments": int(mask.sum()),
        "per_source": per_source,
        "comparisons": comparisons,
        "feature_means": {sid: dict(zip(f.tolist(), m.tolist(), strict=True)) for sid, (f, m) in feature_means.items()},
    }


def _yesno_section(
    table: JudgmentTable, question: dict, sources: dict[int, dict], *, n_resamples: int, seed: int
) -> dict:
    mask, answered = table.values(question["key"])
    values = np.array([bool(v) for v in answered], dtype=float)
    items, src, raters = table.item[mask], table.source[mask], table.labeller[mask]
    per_source = {}
    for sid, info in sources.items():
        here = src == sid
        flagged_items = set(items[here][values[here] > 0].tolist())
        per_source[info["label"]] = {
            "judgments": int(here.sum()),
            "yes": int(values[here].sum()),
            "features": len(set(items[here].tolist())),
            "features_yes": len(flagged_items),  # features at least one labeller said yes to
            "share": st.bootstrap_mean(
                values[here], items[here], raters[here], n_resamples=n_resamples, seed=seed
            ).as_dict(),
        }
    return {"key": question["key"], "prompt": question["prompt"], "per_source": per_source}


def _choice_section(table: JudgmentTable, question: dict, sources: dict[int, dict]) -> dict:
    mask, answered = table.values(question["key"])
    src = table.source[mask]
    options = [o["value"] for o in question["options"]]
    per_source = {}
    for sid, info in sources.items():
        counts = Counter(v for v, s in zip(answered, src, strict=True) if s == sid)
        total = sum(counts.values())
        per_source[info["label"]] = {
            o: {"count": counts[o], "share": round(counts[o] / total, 4) if total else None} for o in options
        }
    return {"key": question["key"], "prompt": question["prompt"], "options": options, "per_source": per_source}


def _agreement(table: JudgmentTable, question: dict, names: dict[int, str], *, n_resamples: int, seed: int) -> dict:
    """Agreement on one question: ordinal for a score, nominal for a choice, and for a per-component
    question nominal over (feature, component) units."""
    mask, answered = table.values(question["key"])
    if question["type"] == "score":
        domain, metric, weights = _levels(question), "ordinal", ORDINAL_WEIGHTS
    else:
        domain, metric, weights = [o["value"] for o in question["options"]], "nominal", None
    if not mask.any():
        return {"key": question["key"], "prompt": question["prompt"], "alpha": None, "pairs": []}
    units, labellers = table.item[mask], table.labeller[mask]
    if question["type"] == "per_component":
        pairs_of = [
            (f"{u}:{c}", r, v) for u, r, a in zip(units, labellers, answered, strict=True) for c, v in a.items()
        ]
        if not pairs_of:
            return {"key": question["key"], "prompt": question["prompt"], "alpha": None, "pairs": []}
        units, labellers, answered = (list(x) for x in zip(*pairs_of, strict=True))
    matrix, raters = st.rating_matrix(answered, units, labellers, domain)
    alpha = st.krippendorff_alpha(
        matrix, n_values=len(domain), level_of_measurement=metric, n_resamples=n_resamples, seed=seed
    )
    pairs = st.pairwise_agreement(matrix, raters, n_values=len(domain), weights=weights)
    for pair in pairs:
        pair["a"], pair["b"] = names.get(pair["a"], str(pair["a"])), names.get(pair["b"], str(pair["b"]))
    return {
        "key": question["key"],
        "prompt": question["prompt"],
        "alpha": alpha,
        "kappa_weights": weights,
        "pairs": pairs,
        "labellers": [names.get(r, str(r)) for r in raters],
    }


def agreement_matrix(section: dict) -> list[list[dict | None]]:
    """The pairwise figures of an agreement section as a square matrix (None on the diagonal / no overlap)."""
    names = section.get("labellers", [])
    index = {n: i for i, n in enumerate(names)}
    matrix: list[list[dict | None]] = [[None] * len(names) for _ in names]
    for pair in section.get("pairs", []):
        i, j = index[pair["a"]], index[pair["b"]]
        matrix[i][j] = matrix[j][i] = pair
    return matrix


def _skips(campaign: Campaign, sources: dict[int, dict]) -> dict:
    counts = defaultdict(Counter)
    assignments = Assignment.objects.filter(campaign=campaign, item__kind=Item.Kind.REGULAR)
    for source_id, status, n in (
        assignments.values_list("item__source_id", "status")
        .annotate(n=Count("pk"))
        .values_list("item__source_id", "status", "n")
    ):
        counts[source_id][status] += n
    per_source = {}
    for sid, info in sources.items():
        done, skipped = counts[sid][Assignment.Status.DONE], counts[sid][Assignment.Status.SKIPPED]
        per_source[info["label"]] = {
            "skipped": skipped,
            "judged": done,
            "rate": round(skipped / (done + skipped), 4) if done + skipped else None,
        }
    reasons = Counter(
        (reason.strip() or "(no reason given)")
        for reason in assignments.filter(status=Assignment.Status.SKIPPED).values_list("skip_reason", flat=True)
    )
    return {"per_source": per_source, "reasons": [{"reason": r, "count": n} for r, n in reasons.most_common()]}


def _median_s(values: np.ndarray) -> float | None:
    return round(float(np.median(values)) / 1000, 1) if len(values) else None


def _labellers(table: JudgmentTable, scores: list[dict], names: dict[int, str], skipped: Counter) -> list[dict]:
    """Per labeller: judgments, skips, median time, mean per score question and how far it sits from the
    other labellers on the same features (mean of own score − others' mean score, where others judged)."""
    out = []
    columns = {}
    for q in scores:
        mask, answered = table.values(q["key"])
        values = np.full(len(table), np.nan)
        values[mask] = np.array(answered, dtype=float)
        columns[q["key"]] = values
    # others' mean on the same feature, per judgment: (feature sum - own) / (feature count - 1)
    _, item_codes = np.unique(table.item, return_inverse=True)
    others = {}
    for key, values in columns.items():
        known = np.isfinite(values)
        sums = np.bincount(item_codes, weights=np.where(known, values, 0.0))
        counts = np.bincount(item_codes, weights=known.astype(float))
        n_others = counts[item_codes] - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            others[key] = np.where(known & (n_others > 0), (sums[item_codes] - values) / n_others, np.nan)
    for uid in sorted(set(table.labeller.tolist()) | set(skipped), key=lambda u: names.get(u, "")):
        mine = table.labeller == uid
        row = {
            "labeller": names.get(uid, str(uid)),
            "judgments": int(mine.sum()),
            "skipped": skipped.get(uid, 0),
            "median_time_s": _median_s(table.time_ms[mine]),
            "questions": {},
        }
        for q in scores:
            values = columns[q["key"]]
            own = mine & np.isfinite(values)
            paired = own & np.isfinite(others[q["key"]])
            row["questions"][q["key"]] = {
                "n": int(own.sum()),
                "mean": round(float(values[own].mean()), 3) if own.any() else None,
                "vs_others": round(float(np.mean(values[paired] - others[q["key"]][paired])), 3)
                if paired.any()
                else None,
                "shared_items": int(paired.sum()),
            }
        out.append(row)
    return out


def _measured(campaign: Campaign, sources: dict[int, dict], score_sections: list[dict]) -> dict:
    """Per judged feature: what the platform measured (frequency on D and on general text, their log-odds,
    max cosine to the GSAE) beside the mean human score; Spearman's rho per source and score question."""
    from labelsite.selectors.measurements import campaign_feature_measurements

    measures = campaign_feature_measurements(campaign=campaign, sources=sources)
    features = []
    for sid, info in sources.items():
        for index, item_id, m in measures.get(sid, []):
            row = {"source": info["label"], "source_id": sid, "feature_index": index, "item_id": item_id, **m}
            for section in score_sections:
                row[section["key"]] = section["feature_means"].get(sid, {}).get(item_id)
            features.append(row)
    correlations = []
    for sid, info in sources.items():
        rows = [r for r in features if r["source_id"] == sid]
        for section in score_sections:
            human = [r[section["key"]] if r[section["key"]] is not None else np.nan for r in rows]
            for measure in ("log_odds", "freq_domain", "freq_general", "max_cos_decoder", "max_cos_encoder"):
                measured = [r[measure] if r[measure] is not None else np.nan for r in rows]
                rho = st.spearman(measured, human)
                correlations.append(
                    {"source": info["label"], "question": section["key"], "prompt": section["prompt"]}
                    | {"measure": measure, **rho, "below_minimum": rho["n"] < st.MIN_FEATURES}
                )
    return {"features": features, "spearman": correlations}


AGREEMENT_RESAMPLES = 200  # Krippendorff's alpha is recomputed by the package for each resample
CACHE_SECONDS = 600


def _fingerprint(campaign: Campaign) -> str:
    """Changes whenever a judgment or a skip is made or revised (and when the campaign's state changes)."""
    judged = Judgment.objects.filter(campaign=campaign).aggregate(
        n=Count("pk"), last=Max("updated_at"), rev=Sum("revisions")
    )
    skipped = Assignment.objects.filter(campaign=campaign, status=Assignment.Status.SKIPPED).count()
    state = f"{campaign.status}:{judged['n']}:{judged['last']}:{judged['rev']}:{skipped}"
    return hashlib.sha1(state.encode()).hexdigest()


def campaign_results(*, campaign: Campaign, n_resamples: int = st.DEFAULT_RESAMPLES, identities: bool = True) -> dict:
    """Everything the results page shows. Raises LabelError while the campaign hides its mapping.

    `identities`: name labellers by username (the admin page) or by their export pseudonym. Cached until a
    judgment or skip changes, so the page and its chart downloads compute the bootstraps once."""
    require_mapping(campaign)
    key = f"results:v2:{campaign.pk}:{n_resamples}:{int(identities)}:{_fingerprint(campaign)}"
    results = cache.get(key)
    if results is None:
        results = _compute(campaign, n_resamples=n_resamples, identities=identities)
        cache.set(key, results, CACHE_SECONDS)
    return results


def _compute(campaign: Campaign, *, n_resamples: int, identities: bool) -> dict:
    from labelsite.selectors.exports import labeller_pseudonym
    from labelsite.selectors.quality import campaign_quality

    seed = campaign.seed
    sources = source_labels(campaign)
    everything = judgment_table(campaign=campaign)
    table = everything.only(everything.kind == Item.Kind.REGULAR)  # the study: no repeats, no gold items
    user_ids = set(everything.labeller.tolist()) | set(
        Assignment.objects.filter(campaign=campaign, status=Assignment.Status.SKIPPED).values_list(
            "labeller_id", flat=True
        )
    )
    if identities:
        users = get_user_model().objects.in_bulk(user_ids)
        names = {uid: users[uid].get_username() for uid in user_ids}
    else:
        names = {uid: labeller_pseudonym(uid) for uid in user_ids}
    scores = _questions(campaign, "score")
    score_sections = [_score_section(table, q, sources, n_resamples=n_resamples, seed=seed) for q in scores]
    skipped = Counter(
        Assignment.objects.filter(
            campaign=campaign, status=Assignment.Status.SKIPPED, item__kind=Item.Kind.REGULAR
        ).values_list("labeller_id", flat=True)
    )
    items_per_source = Counter(
        Item.objects.filter(campaign=campaign, kind=Item.Kind.REGULAR).values_list("source_id", flat=True)
    )
    time_by_source = {info["label"]: _median_s(table.time_ms[table.source == sid]) for sid, info in sources.items()}
    results = {
        "campaign": {"id": campaign.pk, "name": campaign.name, "status": campaign.status, "overlap": campaign.overlap},
        "sources": [{**info, "items": items_per_source.get(sid, 0)} for sid, info in sources.items()],
        "judgments": len(table),
        "features": len(set(table.item.tolist())),
        "labellers": len(set(table.labeller.tolist())),
        "scores": score_sections,
        "flags": [
            _yesno_section(table, q, sources, n_resamples=n_resamples, seed=seed) for q in _questions(campaign, "yesno")
        ],
        "choices": [_choice_section(table, q, sources) for q in _questions(campaign, "choice")],
        "skips": _skips(campaign, sources),
        "time": {"median_s": _median_s(table.time_ms), "per_source": time_by_source},
        "per_labeller": _labellers(table, scores, names, skipped),
        "measured": _measured(campaign, sources, score_sections),
        "agreement": [],
        "quality": campaign_quality(
            campaign=campaign, names=names, n_resamples=min(n_resamples, AGREEMENT_RESAMPLES), seed=seed
        ),
        "n_resamples": n_resamples,
        "blinding": _blinding(campaign, table, sources, scores),
        "presentation": _audit_findings(campaign),
        "min_features": st.MIN_FEATURES,
    }
    if campaign.overlap >= 2:
        for q in [*scores, *_questions(campaign, "choice"), *_questions(campaign, "per_component")]:
            results["agreement"].append(
                _agreement(table, q, names, n_resamples=min(n_resamples, AGREEMENT_RESAMPLES), seed=seed)
            )
    return results


def _audit_findings(campaign: Campaign) -> dict | None:
    """The blinding audit's verdict on the presentation and its content report (a finding, in plain words)."""
    from labelsite.services.audit import stored_audit

    audit = stored_audit(campaign)
    if audit is None:
        return None
    return {"verdict": audit.verdict, "summary": audit.summary(), "content": audit.content_summary()}


def _blinding(campaign: Campaign, table: JudgmentTable, sources: dict[int, dict], scores: list[dict]) -> dict | None:
    """Whether blinding held, measured as trials do, from the labellers' own guesses of the source: the guess
    table (letters by source), Bang's index per source and James' overall (95% intervals), and the mean of each
    score by guess (do labellers who guess "A" score higher?). None when the campaign asks no guess."""
    question = next((q for q in campaign.questions if q["key"] == schema.GUESS_KEY), None)
    if question is None:
        return None
    letters = campaign.source_letters()  # {source id: letter}
    order = list(sources)
    k = len(order)
    row_of = {letters[sid]: j for j, sid in enumerate(order)} | {schema.DONT_KNOW: k}
    counts = np.zeros((k + 1, k), dtype=np.int64)  # [guess (letters, then don't know), true source]
    answered, guesses = table.values(schema.GUESS_KEY)
    column = {sid: j for j, sid in enumerate(order)}
    for source, guess in zip(table.source[answered].tolist(), guesses, strict=True):
        if guess in row_of:
            counts[row_of[guess], column[source]] += 1
    labels = {o["value"]: o["label"] for o in question["options"]}
    by_guess = []
    for q in scores:
        picked: dict[str, list[float]] = defaultdict(list)
        for answers in table.answers:
            value, guess = answers.get(q["key"]), answers.get(schema.GUESS_KEY)
            if value is not None and guess in labels:
                picked[guess].append(float(value))
        means = {label: {"mean": _round_mean(picked[v]), "n": len(picked[v])} for v, label in labels.items()}
        by_guess.append({"key": q["key"], "prompt": q["prompt"], "by_guess": means})
    bang = st.bang_index(counts) if k >= 2 else [None] * k
    return {
        "guesses": int(counts.sum()),
        "table": [
            {
                "source": sources[sid]["label"],
                "letter": letters[sid],
                "counts": {labels[v]: int(counts[row_of[v], j]) for v in labels},
                "bang": bang[j],
            }
            for j, sid in enumerate(order)
        ],  # fmt: skip
        "james": st.james_index(counts) if k >= 2 and counts.sum() else None,
        "scores_by_guess": by_guess,
    }


def _round_mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def breakdown_rows(results: dict) -> list[dict]:
    """The score breakdown as flat rows (one per source and score question): the breakdown CSV."""
    rows = []
    for section in results["scores"]:
        for label, entry in section["per_source"].items():
            est = entry["estimate"]
            row = {
                "question": section["key"],
                "source": label,
                "judgments": est["n"],
                "features": est["n_units"],
                "mean": est["mean"],
                "ci_low": est["low"],
                "ci_high": est["high"],
                "resampled": est["resampled"],
                "labeller_adjusted_mean": entry["adjusted_mean"],
            }
            for level, d in entry["distribution"].items():
                row[f"count_{level}"] = d["count"]
                row[f"share_{level}"] = d["share"]
            rows.append(row)
    return rows


def results_json(results: dict) -> dict:
    """The results without the per-feature lookup tables only the figures need."""
    out = dict(results)
    out["scores"] = [{k: v for k, v in s.items() if k != "feature_means"} for s in results["scores"]]
    return out
