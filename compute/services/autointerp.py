"""Automated interpretability as jobs: explain features from their dashboards, score explanations.

One job (kind `autointerp`) covers one SAE x corpus and a list of features. It works in batches of
features; each batch's explanations and scores are written in one transaction, so a killed worker
loses at most the batch in flight, and a retried job skips everything already stored (an automated
explanation is unique per feature and model, a score per explanation and method).

Human explanations (from campaigns) arrive as job parameters (compute never reads labelsite) and are
recorded, then scored on the same stored material as the automated ones.

Imported by the web process: nothing here imports torch; the LLM client is built inside the handler.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from compute.jobs import JobContext, JobInputError, job_create
from compute.ml.autointerp import (
    METHODS,
    AutoInterpConfig,
    ExplainResult,
    ExplanationRefused,
    ScoreResult,
    ScoringMaterial,
    contexts_from_dashboard,
    explain,
    explainer_messages,
    negative_candidates,
    score_explanation,
    scoring_material,
    select_negatives,
    split_contexts,
)
from compute.ml.config import AutoInterpJobConfig, ConfigError
from compute.ml.tokens import printable
from compute.models import (
    AutoInterpFeature,
    DashboardSet,
    Explanation,
    ExplanationScore,
    FeatureDashboard,
    Job,
    JobKind,
)

DEFAULT_BATCH = AutoInterpJobConfig.batch_size
NEGATIVE_POOL_FEATURES = 48  # other features whose windows serve as non-activating contexts
MAX_FEATURES_PER_JOB = 100_000


# ----------------------------------------------------------------------------- starting jobs


def _batch_size(params: dict[str, Any]) -> int:
    try:
        return AutoInterpJobConfig.from_params(params).batch_size
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc


def _ready_set(sae_id: int, corpus_id: int) -> DashboardSet:
    dset = DashboardSet.objects.filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY).first()
    if dset is None:
        raise JobInputError("Build this SAE's dashboards on this corpus first: explanations are written from them.")
    return dset


def _config(raw: Any) -> AutoInterpConfig:
    """The job's AutoInterpConfig: defaults overridden by whole numbers / numbers of the right kind."""
    if raw is None:
        return AutoInterpConfig()
    if not isinstance(raw, dict):
        raise JobInputError("config must be an object of autointerp settings.")
    defaults = AutoInterpConfig().as_dict()
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise JobInputError(f"unknown autointerp settings: {', '.join(unknown)}.")
    for key, value in raw.items():
        kind = type(defaults[key])
        ok = (
            isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
        )
        if not ok or value < 0:
            raise JobInputError(f"{key} must be a non-negative {'whole ' if kind is int else ''}number; got {value!r}.")
    config = AutoInterpConfig.from_dict({**defaults, **raw})
    if config.n_shown < 1 or config.explain_attempts < 1 or config.score_attempts < 1:
        raise JobInputError("n_shown, explain_attempts and score_attempts must be at least 1.")
    return config


def _client():
    """The configured LLM client; unusable settings are the admin's to fix (JobInputError)."""
    from compute.ml.llm import LLMError
    from compute.services.llm import llm_client

    try:
        return llm_client()
    except LLMError as exc:
        raise JobInputError(f"LLM settings: {exc}") from exc


def autointerp_start(
    *,
    sae_id: int,
    corpus_id: int,
    feature_indices: list[int] | None = None,
    n_random: int | None = None,
    explain: bool = True,
    score: bool = True,
    human: list[dict[str, Any]] | None = None,
    campaign_id: int | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH,
    created_by=None,
) -> Job:
    """Queue a job that explains (and/or scores) features of one SAE on one corpus.

    Features: explicit `feature_indices`, or `n_random` features drawn (seeded) among those that fire
    on this corpus. `human`: explanations to record and score, each {"feature_index", "ref", "text",
    "score"}. Cheap checks happen here (JobInputError says what to fix); the work happens on a worker.
    """
    dset = _ready_set(sae_id, corpus_id)
    _config(config)
    if explain or score:
        _client()
    if feature_indices is None:
        if not n_random or n_random < 1:
            raise JobInputError("Give feature indices or a number of random features (at least 1).")
        firing = list(
            dset.features.filter(n_firing__gt=0).order_by("feature_index").values_list("feature_index", flat=True)
        )
        if not firing:
            raise JobInputError("No feature fires on this corpus; nothing to explain.")
        feature_indices = sorted(random.Random(seed).sample(firing, min(n_random, len(firing))))
    bad = [f for f in feature_indices if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < dset.n_features]
    if bad:
        raise JobInputError(f"feature indices must be whole numbers from 0 to {dset.n_features - 1}; got {bad[:5]}.")
    if not feature_indices and not human:
        raise JobInputError("Nothing to do: no features and no human explanations.")
    entries = _human_entries(human or [], dset)
    params: dict[str, Any] = {
        "sae_id": sae_id,
        "corpus_id": corpus_id,
        "feature_indices": sorted(set(feature_indices)),
        "explain": bool(explain),
        "score": bool(score),
        "batch_size": batch_size,
        "human": entries,
        "seed": seed,
    }
    if campaign_id is not None:
        params["campaign_id"] = campaign_id
    if config:
        params["config"] = config
    _batch_size(params)
    return job_create(kind=JobKind.AUTOINTERP, params=params, created_by=created_by)


def _human_entries(raw: list[dict[str, Any]], dset: DashboardSet) -> list[dict[str, Any]]:
    entries = []
    for entry in raw:
        text = str(entry.get("text", "")).strip()
        index = entry.get("feature_index")
        if not text:
            continue
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < dset.n_features:
            raise JobInputError(f"human explanation for a feature outside this SAE: {index!r}.")
        score = entry.get("score")
        entries.append(
            {
                "feature_index": index,
                "ref": str(entry["ref"])[:200],
                "text": text,
                "score": score if isinstance(score, int) and not isinstance(score, bool) else None,
                "campaign_id": entry.get("campaign_id"),
            }
        )
    return entries


# ----------------------------------------------------------------------------- material


def _negative_pool(dset: DashboardSet, seed: int) -> list[tuple[int, Any]]:
    """(feature index, candidate context) from a seeded sample of this set's firing features."""
    firing = list(
        dset.features.filter(n_firing__gt=0).order_by("feature_index").values_list("feature_index", flat=True)
    )
    chosen = sorted(random.Random(f"{dset.pk}:{seed}").sample(firing, min(NEGATIVE_POOL_FEATURES, len(firing))))
    pool = []
    for row in dset.features.filter(feature_index__in=chosen).order_by("feature_index"):
        pool.extend((row.feature_index, c) for c in negative_candidates(row.data))
    return pool


def feature_material(
    *, dset: DashboardSet, feature_index: int, config: AutoInterpConfig, pool: list[tuple[int, Any]]
) -> AutoInterpFeature:
    """The feature's stored material, built (deterministically) the first time it is asked for."""
    existing = AutoInterpFeature.objects.filter(dashboard_set=dset, feature_index=feature_index).first()
    if existing is not None:
        return existing
    row = FeatureDashboard.objects.get(dashboard_set=dset, feature_index=feature_index)
    data = row.data
    top, bins = contexts_from_dashboard(data)
    split = split_contexts(top, bins, config)
    own = [*top, *(c for b in bins for c in b)]
    negatives = select_negatives(
        [c for index, c in pool if index != feature_index], exclude=own, n=len(split.test), seed=config.seed
    )
    material = scoring_material(split.test, negatives, config)
    logits = [printable(token) for token, _ in data.get("logits", {}).get("pos", [])][: config.n_logits]
    explain_contexts = {
        "contexts": [
            {"tokens": list(c.tokens), "values": list(c.values), "quantile": c.quantile} for c in split.explain
        ],
        "logits": logits,
    }
    try:
        with transaction.atomic():
            return AutoInterpFeature.objects.create(
                dashboard_set=dset,
                feature_index=feature_index,
                config=config.as_dict(),
                explain_contexts=explain_contexts,
                material=material.as_dict(),
                n_test=len(material.detection) // 2,
            )
    except IntegrityError:  # another job built it first: theirs is the one everyone uses
        return AutoInterpFeature.objects.get(dashboard_set=dset, feature_index=feature_index)


def _explainer_prompt(feature: AutoInterpFeature, config: AutoInterpConfig) -> list[dict[str, str]]:
    from compute.ml.autointerp import Context

    stored = feature.explain_contexts
    contexts = [Context(tokens=tuple(c["tokens"]), values=tuple(c["values"])) for c in stored["contexts"]]
    return explainer_messages(contexts, stored.get("logits", []), config)


# ----------------------------------------------------------------------------- the job


@dataclass
class _Pending:
    """One feature's results of a batch, written together."""

    feature: AutoInterpFeature
    explanation: ExplainResult | None = None
    refused: list[dict[str, str]] | None = None
    scores: dict[tuple[int | None, str], ScoreResult] = field(default_factory=dict)  # (explanation id|None=new, method)


def run_autointerp_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler (kind autointerp): record human explanations, explain and score features in batches."""
    params = ctx.params
    try:
        dset = _ready_set(int(params["sae_id"]), int(params["corpus_id"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise JobInputError("sae_id and corpus_id must name an SAE and a corpus.") from exc
    config = _config(params.get("config"))
    batch_size = _batch_size(params)
    features = set(params.get("feature_indices") or [])
    human = _human_entries(params.get("human") or [], dset)
    do_explain, do_score = bool(params.get("explain", True)), bool(params.get("score", True))
    seed = params.get("seed", 0)

    ctx.progress(0.01, "building held-out material")
    pool = _negative_pool(dset, seed if isinstance(seed, int) else 0)
    human_features = _record_human(dset=dset, entries=human, config=config, pool=pool, job=ctx.job)
    todo = sorted(features | human_features)

    client = None
    if (do_explain and features) or (do_score and todo):
        ctx.progress(0.02, "loading the language model client")
        client = _client()
    model_name = getattr(client, "model", "") or ""
    # An endpoint answers several scoring prompts at once; the local model generates one at a time.
    workers = max(1, settings.LLM_MAX_CONCURRENCY) if settings.LLM_BASE_URL else 1
    stats = {"explained": 0, "refused": 0, "scored": 0, "skipped": 0, "silent": 0, "prompts": 0, "model_s": 0.0}
    t_start = time.perf_counter()
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]

    def step(number: int, what: str) -> None:  # the local model takes minutes per feature: say where it is
        ctx.progress(0.05 + 0.95 * number / len(todo), f"feature {number + 1} of {len(todo)}: {what}")

    for bi, batch in enumerate(batches):
        pending = []
        for position, index in enumerate(batch):
            number = bi * batch_size + position  # features finished before this one
            feature = feature_material(dset=dset, feature_index=index, config=config, pool=pool)
            item = _Pending(feature=feature)
            fconfig = AutoInterpConfig.from_dict(feature.config)
            ref = f"model:{model_name}"
            if do_explain and index in features and client is not None:
                if not feature.explain_contexts.get("contexts"):
                    stats["silent"] += 1  # never fires on this corpus: nothing to explain from
                elif feature.explanations.filter(source=Explanation.Source.AUTO, ref=ref).exists():
                    stats["skipped"] += 1
                else:
                    try:
                        step(number, "explaining")
                        item.explanation = explain(client, _explainer_prompt(feature, fconfig), fconfig)
                        stats["model_s"] += item.explanation.model_seconds
                    except ExplanationRefused as exc:
                        item.refused = exc.refused
                        stats["refused"] += 1
                        stats["model_s"] += exc.model_seconds
            if do_score and client is not None and feature.n_test > 0:
                material = ScoringMaterial.from_dict(feature.material)
                targets: list[tuple[int | None, str]] = [
                    (e.pk, e.text) for e in feature.explanations.all() if _missing_methods(e)
                ]
                if item.explanation is not None:
                    targets.append((None, item.explanation.text))
                for key, text in targets:
                    done = (
                        set()
                        if key is None
                        else set(ExplanationScore.objects.filter(explanation_id=key).values_list("method", flat=True))
                    )
                    for method in METHODS:
                        if method in done:
                            continue
                        step(number, f"scoring ({method})")
                        result = score_explanation(
                            client,
                            explanation=text,
                            material=material,
                            method=method,
                            config=fconfig,
                            workers=workers,
                        )
                        item.scores[(key, method)] = result
                        stats["prompts"] += result.prompts
                        stats["model_s"] += result.model_seconds
            pending.append(item)
        written = _write_batch(pending, job=ctx.job, model_ref=f"model:{model_name}")
        stats["explained"] += written["explained"]
        stats["scored"] += written["scored"]
        ctx.progress(
            0.05 + 0.95 * (bi + 1) / len(batches),
            f"{min((bi + 1) * batch_size, len(todo))} of {len(todo)} features",
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()},
        )
    wall = time.perf_counter() - t_start
    return {
        **stats,
        "features": len(todo),
        "human_recorded": len(human),
        "wall_s": round(wall, 3),
        "model": model_name,
    }


def _missing_methods(explanation: Explanation) -> bool:
    return explanation.scores.count() < len(METHODS)


def _record_human(
    *, dset: DashboardSet, entries: list[dict[str, Any]], config: AutoInterpConfig, pool, job: Job
) -> set[int]:
    """Record (or update) human explanations; a changed text loses its old scores. Returns their features."""
    touched: set[int] = set()
    for entry in entries:
        feature = feature_material(dset=dset, feature_index=entry["feature_index"], config=config, pool=pool)
        with transaction.atomic():
            explanation, created = Explanation.objects.select_for_update().get_or_create(
                feature=feature,
                source=Explanation.Source.HUMAN,
                ref=entry["ref"],
                defaults={
                    "text": entry["text"],
                    "human_score": entry["score"],
                    "campaign_id": entry.get("campaign_id"),
                    "job": job,
                },
            )
            if not created and (explanation.text != entry["text"] or explanation.human_score != entry["score"]):
                if explanation.text != entry["text"]:
                    explanation.scores.all().delete()
                explanation.text = entry["text"]
                explanation.human_score = entry["score"]
                explanation.save(update_fields=["text", "human_score"])
        touched.add(entry["feature_index"])
    return touched


def _write_batch(pending: list[_Pending], *, job: Job, model_ref: str) -> dict[str, int]:
    """One transaction for a batch: new automated explanations, then every score computed for the batch."""
    explained = scored = 0
    with transaction.atomic():
        for item in pending:
            new_id: int | None = None
            if item.explanation is not None:
                result = item.explanation
                explanation, created = Explanation.objects.get_or_create(
                    feature=item.feature,
                    source=Explanation.Source.AUTO,
                    ref=model_ref,
                    defaults={
                        "text": result.text,
                        "model": result.model,
                        "prompt": result.messages,
                        "params": result.params,
                        "raw": result.raw if isinstance(result.raw, dict) else {"text": result.raw},
                        "refused": result.refused,
                        "job": job,
                    },
                )
                # Another job explained it meanwhile: keep theirs, and drop scores of our text.
                new_id = explanation.pk if created else None
                explained += created
            for (key, method), score in item.scores.items():
                explanation_id = key if key is not None else new_id
                if explanation_id is None:
                    continue
                _, created = ExplanationScore.objects.get_or_create(
                    explanation_id=explanation_id,
                    method=method,
                    defaults={
                        "balanced_accuracy": score.balanced_accuracy,
                        "n": score.n,
                        "n_invalid": score.n_invalid,
                        "tp": score.tp,
                        "tn": score.tn,
                        "fp": score.fp,
                        "fn": score.fn,
                        "predictions": score.predictions,
                        "answers": score.answers,
                        "model": score.model,
                        "params": score.params,
                        "job": job,
                    },
                )
                scored += created
    return {"explained": explained, "scored": scored}


def study_autointerp_start(*, study_id: int, n_random: int = 50, seed: int = 0, created_by=None) -> list[Job]:
    """Explain and score `n_random` firing features of every SAE of a study (GSAE included), on the domain and
    the general corpus; SAE x corpus pairs without dashboards are skipped. JobInputError when none has them."""
    from compute.models import Study

    study = Study.objects.select_related("gsae").get(pk=study_id)
    jobs, missing = [], []
    for sae in [study.gsae, *study.saes.order_by("pk")]:
        for corpus_id in (study.domain_corpus_id, study.general_corpus_id):
            active = Job.objects.filter(
                kind=JobKind.AUTOINTERP,
                status__in=["queued", "running"],
                params__study_id=study.pk,
                params__sae_id=sae.pk,
                params__corpus_id=corpus_id,
            ).first()
            if active is not None:
                jobs.append(active)
                continue
            try:
                job = autointerp_start(
                    sae_id=sae.pk, corpus_id=corpus_id, n_random=n_random, seed=seed, created_by=created_by
                )
            except JobInputError as exc:
                missing.append(f"{sae.name}: {exc}")
                continue
            Job.objects.filter(pk=job.pk).update(params={**job.params, "study_id": study.pk})
            jobs.append(job)
    if not jobs:
        raise JobInputError("No SAE of this study has dashboards yet. " + " ".join(missing[:2]))
    return jobs
