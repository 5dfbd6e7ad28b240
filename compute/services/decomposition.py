"""Decomposition probes: propose sub-components (LLM, local model or typed), measure them in one batched job,
classify against controls.

Importable by the web process (torch and the model are imported inside the job handlers only).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from compute.jobs import JobContext, JobInputError, JobInterrupted, job_create
from compute.ml.config import ConfigError, DecompositionProposeConfig
from compute.ml.decomposition import (
    GENERAL_CONTROLS,
    ComponentsError,
    Thresholds,
    classify,
    clean_components,
    components_from_text,
    proposal_messages,
    proposal_schema,
    relative,
)
from compute.ml.llm import LLMError, LocalInstructClient
from compute.models import SAE, Corpus, DashboardSet, Decomposition, FeatureDashboard, JobKind
from compute.services.llm import llm_complete
from compute.services.registry import job_scratch, language_model_load, sae_load

MAX_COMPONENTS = 12
MAX_DESCRIPTION_CHARS = 2000


class DecompositionError(JobInputError):
    """A decomposition request that cannot work; the message says what to fix."""


LOCAL_PROPOSAL_RETRIES = 1
# A component (a short description and a few phrases) takes some 60-100 tokens of JSON; the object around them
# a few dozen more.
PROPOSAL_TOKENS_PER_COMPONENT = 150
PROPOSAL_TOKENS_OUTSIDE = 60


def decomposition_thresholds() -> Thresholds:
    try:
        return Thresholds(
            activation=settings.DECOMP_ACTIVATION,
            margin=settings.DECOMP_MARGIN,
            clean_share=settings.DECOMP_CLEAN_SHARE,
            partly_share=settings.DECOMP_PARTLY_SHARE,
        )
    except ValueError as exc:
        raise DecompositionError(f"Decomposition thresholds in the settings: {exc}") from exc


def feature_corpus_max(*, sae: SAE, corpus: Corpus, feature_index: int) -> float:
    """The feature's max activation on the corpus, from its finished dashboard; DecompositionError otherwise."""
    if not 0 <= feature_index < sae.d_sae:
        raise DecompositionError(f"SAE {sae.name} has features 0 to {sae.d_sae - 1}; got {feature_index}.")
    row = (
        FeatureDashboard.objects.filter(
            dashboard_set__sae=sae,
            dashboard_set__corpus=corpus,
            dashboard_set__status=DashboardSet.Status.READY,
            feature_index=feature_index,
        )
        .only("max_activation")
        .first()
    )
    if row is None:
        raise DecompositionError(
            f"No finished dashboard of {sae.name} on {corpus.name}: build it first (its max activation is the scale)."
        )
    if row.max_activation <= 0:
        raise DecompositionError(
            f"Feature {feature_index} never fired on {corpus.name}: there is no activation scale to compare with."
        )
    return float(row.max_activation)


def _check_request(*, sae: SAE, corpus: Corpus, feature_index: int, description: str) -> tuple[str, float]:
    description = " ".join(description.split())
    if not description:
        raise DecompositionError("Give the feature's description (what it is said to mean).")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise DecompositionError(f"The description is longer than {MAX_DESCRIPTION_CHARS} characters.")
    if sae.status != SAE.Status.READY:
        raise DecompositionError(f"SAE {sae.name} is {sae.status}, not ready.")
    return description, feature_corpus_max(sae=sae, corpus=corpus, feature_index=feature_index)


def decomposition_propose(
    *,
    sae: SAE,
    corpus: Corpus,
    feature_index: int,
    description: str,
    source: str,
    n_components: int = 5,
    n_phrases: int = 3,
    created_by=None,
) -> Decomposition:
    """Ask the LLM endpoint (`llm`) or the local model (`local`) for sub-components, in a job.

    A second identical request while the first is still proposing returns the first (double clicks).
    """
    if source not in (Decomposition.Source.LLM, Decomposition.Source.LOCAL):
        raise DecompositionError("Proposals come from the LLM endpoint (llm) or the local model (local).")
    if source == Decomposition.Source.LLM and not settings.LLM_BASE_URL:
        raise DecompositionError("No LLM endpoint is configured (LLM_BASE_URL): use the local model or type them.")
    try:
        config = DecompositionProposeConfig.from_params({"n_components": n_components, "n_phrases": n_phrases})
    except ConfigError as exc:
        raise DecompositionError(str(exc)) from exc
    description, corpus_max = _check_request(
        sae=sae, corpus=corpus, feature_index=feature_index, description=description
    )
    with transaction.atomic():
        pending = Decomposition.objects.filter(
            sae=sae,
            corpus=corpus,
            feature_index=feature_index,
            description=description,
            source=source,
            status=Decomposition.Status.PROPOSING,
        ).first()
        if pending is not None:
            return pending
        decomposition = Decomposition.objects.create(
            sae=sae,
            corpus=corpus,
            feature_index=feature_index,
            description=description,
            source=source,
            status=Decomposition.Status.PROPOSING,
            corpus_max=corpus_max,
            created_by=created_by,
        )
        job = job_create(
            kind=JobKind.PROPOSE_DECOMPOSITION,
            params={"decomposition_id": decomposition.pk, **config.to_params()},
            created_by=created_by,
        )
        Decomposition.objects.filter(pk=decomposition.pk).update(job=job)
        decomposition.job = job
    return decomposition


def decomposition_create_manual(
    *, sae: SAE, corpus: Corpus, feature_index: int, description: str, components_text: str, created_by=None
) -> Decomposition:
    """Sub-components typed by an admin (text form: a name line, `+ phrase` and `- near miss` lines)."""
    description, corpus_max = _check_request(
        sae=sae, corpus=corpus, feature_index=feature_index, description=description
    )
    components, warnings = _parse(components_text)
    return Decomposition.objects.create(
        sae=sae,
        corpus=corpus,
        feature_index=feature_index,
        description=description,
        source=Decomposition.Source.MANUAL,
        status=Decomposition.Status.DRAFT,
        components=components,
        warnings=warnings,
        corpus_max=corpus_max,
        created_by=created_by,
    )


def _parse(components_text: str) -> tuple[list[dict], list[str]]:
    try:
        components, warnings = clean_components(components_from_text(components_text))
    except ComponentsError as exc:
        raise DecompositionError(str(exc)) from exc
    if len(components) > MAX_COMPONENTS:
        raise DecompositionError(f"At most {MAX_COMPONENTS} sub-components.")
    return components, warnings


def decomposition_edit(*, decomposition: Decomposition, components_text: str) -> Decomposition:
    """Replace the sub-components (any source); the old measurement no longer applies and is cleared."""
    components, warnings = _parse(components_text)
    with transaction.atomic():
        locked = Decomposition.objects.select_for_update().get(pk=decomposition.pk)
        if locked.status == Decomposition.Status.PROPOSING:
            raise DecompositionError("This decomposition is still being proposed; edit it when the proposal is in.")
        locked.components = components
        locked.warnings = warnings
        locked.version = F("version") + 1
        locked.status = Decomposition.Status.DRAFT
        locked.measurement, locked.verdict, locked.share, locked.error = {}, "", None, ""
        locked.save()
    locked.refresh_from_db()
    return locked


def run_propose_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler: ask for the proposal, store it only when it is complete and valid (else nothing but the error)."""
    try:
        decomposition = Decomposition.objects.get(pk=ctx.params.get("decomposition_id"))
    except (Decomposition.DoesNotExist, ValueError, TypeError) as exc:
        raise JobInputError("decomposition_id must name an existing decomposition.") from exc
    if decomposition.status != Decomposition.Status.PROPOSING:
        return {"decomposition": decomposition.pk, "skipped": f"already {decomposition.status}"}
    try:
        config = DecompositionProposeConfig.from_params(ctx.params)
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc
    n_components, n_phrases = config.n_components, config.n_phrases
    # The local 135M model generates ~10 tokens/s on a CPU; its decoding follows the schema, so a retry is only for
    # an answer cut off at the token budget: it tries twice.
    local_retries = min(settings.LLM_RETRIES, LOCAL_PROPOSAL_RETRIES)
    client = LocalInstructClient(retries=local_retries) if decomposition.source == "local" else None
    ctx.progress(0.1, "asking the local model" if client else "asking the LLM endpoint")
    try:
        completion, call = llm_complete(
            purpose="decomposition",
            messages=proposal_messages(decomposition.description, n_components=n_components, n_phrases=n_phrases),
            max_tokens=PROPOSAL_TOKENS_PER_COMPONENT * n_components + PROPOSAL_TOKENS_OUTSIDE,
            temperature=0.3,
            json_schema=proposal_schema(n_components=n_components, n_phrases=n_phrases, capped=client is not None),
            job=ctx.job,
            client=client,
        )
        components, warnings = clean_components(
            completion.data["components"], n_components=n_components, n_phrases=n_phrases, drop_invalid=True
        )
    except (LLMError, ComponentsError) as exc:
        Decomposition.objects.filter(pk=decomposition.pk, status=Decomposition.Status.PROPOSING).update(
            status=Decomposition.Status.FAILED, error=str(exc)[:2000]
        )
        raise JobInputError(f"No usable proposal: {exc}") from exc
    Decomposition.objects.filter(pk=decomposition.pk, status=Decomposition.Status.PROPOSING).update(
        status=Decomposition.Status.DRAFT, components=components, warnings=warnings, llm_call=call, error=""
    )
    return {"decomposition": decomposition.pk, "components": len(components), "warnings": warnings}


def decompositions_measure(*, decompositions: list[Decomposition], created_by=None):
    """Queue one batched measurement job for these decompositions (each must have sub-components)."""
    if not decompositions:
        raise DecompositionError("Choose at least one decomposition to measure.")
    for decomposition in decompositions:
        if decomposition.status == Decomposition.Status.PROPOSING or not decomposition.components:
            raise DecompositionError(f"Decomposition {decomposition.pk} has no sub-components yet.")
    ids = sorted(d.pk for d in decompositions)
    with transaction.atomic():
        job = job_create(
            kind=JobKind.MEASURE_DECOMPOSITIONS,
            params={"decompositions": {str(d.pk): d.version for d in decompositions}},
            created_by=created_by,
        )
        Decomposition.objects.filter(pk__in=ids).update(status=Decomposition.Status.MEASURING, job=job, error="")
    return job


def _phrase_entry(text: str, stats: dict[str, Any], corpus_max: float) -> dict[str, Any]:
    return {
        "text": text,
        **stats,
        "rel_max": relative(stats["max"], corpus_max),
        "rel_total": relative(stats["total"], corpus_max),
    }


def run_measure_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler (gpu queue): every phrase, near miss and general control of every decomposition, batched per SAE.

    A decomposition edited while this job ran (its version moved on) keeps its new draft: the stale
    measurement is dropped, never stored.
    """
    from compute.ml import lm as ml_lm
    from compute.ml.decomposition import measure_texts

    wanted = ctx.params.get("decompositions")
    if not isinstance(wanted, dict) or not wanted:
        raise JobInputError("decompositions must map decomposition ids to versions.")
    rows = list(Decomposition.objects.filter(pk__in=[int(k) for k in wanted]).select_related("sae__language_model"))
    if len(rows) != len(wanted):
        raise JobInputError("Some decompositions no longer exist.")
    current = [r for r in rows if r.version == int(wanted[str(r.pk)])]
    stale = len(rows) - len(current)  # edited since the job was queued: their new draft waits for a new job
    rows = current
    thresholds = decomposition_thresholds()
    device = ml_lm.default_device()
    ctx.set_device(device)
    by_sae: dict[int, list[Decomposition]] = defaultdict(list)
    for row in rows:
        by_sae[row.sae_id].append(row)
    stored, n_texts = 0, 0
    scratch = job_scratch(prefix=f"decomp-{ctx.job.pk}-")
    try:
        for done, group in enumerate(by_sae.values()):
            sae = group[0].sae
            ctx.progress(0.05 + 0.9 * done / len(by_sae), f"loading {sae.name}")
            try:
                lens_sae = sae_load(sae=sae, device=device, scratch=scratch)
                loaded = language_model_load(language_model=sae.language_model, device=device, hook_name=sae.hook_name)
            except ml_lm.ModelLoadError as exc:
                raise JobInputError(str(exc)) from exc
            texts, features, owners = [], [], []
            for row in group:
                for c, component in enumerate(row.components):
                    for key in ("phrases", "near_misses"):
                        for text in component[key]:
                            texts.append(text)
                            features.append(row.feature_index)
                            owners.append((row.pk, c, key))
                for text in GENERAL_CONTROLS:
                    texts.append(text)
                    features.append(row.feature_index)
                    owners.append((row.pk, -1, "general"))
            ctx.progress(0.05 + 0.9 * (done + 0.5) / len(by_sae), f"measuring {len(texts)} texts on {sae.name}")
            results = measure_texts(
                loaded,
                lens_sae.encode,
                hook_name=sae.hook_name,
                feature_index=features,
                texts=texts,
                max_tokens=settings.DECOMP_MAX_PHRASE_TOKENS,
                device=device,
            )
            n_texts += len(texts)
            per_row: dict[int, dict] = defaultdict(lambda: {"components": defaultdict(dict), "general": []})
            for text, owner, stats in zip(texts, owners, results, strict=True):
                pk, c, key = owner
                entry = (pk, text, stats)
                if key == "general":
                    per_row[pk]["general"].append(entry)
                else:
                    per_row[pk]["components"][c].setdefault(key, []).append(entry)
            for row in group:
                ok = _store_measurement(row, per_row[row.pk], int(wanted[str(row.pk)]), thresholds, sae, ctx)
                stored += ok
                stale += not ok
    except JobInterrupted:
        raise  # the next attempt measures them again
    except BaseException as exc:
        Decomposition.objects.filter(pk__in=[r.pk for r in rows], status=Decomposition.Status.MEASURING).update(
            status=Decomposition.Status.FAILED, error=f"Measurement failed: {exc}"[:2000]
        )
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"measured": stored, "stale": stale, "texts": n_texts}


def _store_measurement(
    row: Decomposition, found: dict, version: int, thresholds: Thresholds, sae: SAE, ctx: JobContext
) -> bool:
    corpus_max = float(row.corpus_max or 0.0)
    components, for_classify, warnings = [], [], []
    for c, component in enumerate(row.components):
        measured = found["components"][c]
        phrases = [_phrase_entry(text, stats, corpus_max) for _, text, stats in measured.get("phrases", [])]
        near = [_phrase_entry(text, stats, corpus_max) for _, text, stats in measured.get("near_misses", [])]
        cut = [p["text"] for p in phrases + near if p["cut"]]
        if cut:
            warnings.append(
                f"{component['name']!r}: {len(cut)} phrase(s) cut to {settings.DECOMP_MAX_PHRASE_TOKENS} tokens."
            )
        components.append({"name": component["name"], "phrases": phrases, "near_misses": near})
        for_classify.append(
            {
                "name": component["name"],
                "phrase_maxima": [p["max"] for p in phrases],
                "control_maxima": [p["max"] for p in near],
            }
        )
    general = [_phrase_entry(text, stats, corpus_max) for _, text, stats in found["general"]]
    verdict = classify(for_classify, [g["max"] for g in general], corpus_max=corpus_max, thresholds=thresholds)
    measurement = {
        "corpus_max": corpus_max,
        "model": sae.language_model.name,
        "hook_name": sae.hook_name,
        "max_tokens": settings.DECOMP_MAX_PHRASE_TOKENS,
        "components": components,
        "general": general,
        "verdict": verdict,
        "job": ctx.job.pk,
    }
    updated = Decomposition.objects.filter(pk=row.pk, version=version).update(
        status=Decomposition.Status.MEASURED,
        measurement=measurement,
        verdict=verdict["class"],
        share=verdict["share"],
        warnings=[*[w for w in row.warnings if "cut to" not in w], *warnings],
        error="",
    )
    return bool(updated)


def decomposition_summary() -> list[dict[str, Any]]:
    """Per SAE with measured decompositions: how many features fall in each class (the latest measurement of each
    feature counts once)."""
    latest: dict[tuple[int, int], Decomposition] = {}
    for row in (
        Decomposition.objects.filter(status=Decomposition.Status.MEASURED)
        .select_related("sae")
        .only("sae__name", "sae__method", "feature_index", "verdict", "updated_at")
        .order_by("updated_at", "id")
    ):
        latest[(row.sae_id, row.feature_index)] = row
    per_sae: dict[int, dict[str, Any]] = {}
    for row in latest.values():
        entry = per_sae.setdefault(
            row.sae_id,
            {"sae": row.sae, "label": row.sae.name, "counts": {"cleanly": 0, "partly": 0, "not": 0}, "total": 0},
        )
        entry["counts"][row.verdict] += 1
        entry["total"] += 1
    return sorted(per_sae.values(), key=lambda e: e["label"])


def decompositions_abandon_job(*, job, reason: str) -> None:
    """A proposal or measurement job that will never finish: its decompositions fail instead of waiting forever."""
    Decomposition.objects.filter(
        job=job, status__in=[Decomposition.Status.PROPOSING, Decomposition.Status.MEASURING]
    ).update(status=Decomposition.Status.FAILED, error=f"The job was abandoned: {reason}"[:2000])


def decomposition_blind_panel(*, sae_id: int, feature_index: int) -> tuple[str, list[str]]:
    """What a labeller may see of a feature's latest measured decomposition: (panel HTML, sub-component names).

    Only the sub-components, their phrases with per-token shading and levels relative to the feature's
    corpus max; never the SAE, the feature index, the description or any row id. ("", []) when the feature
    has no measured decomposition.
    """
    from django.template.loader import render_to_string

    from compute.selectors.dashboard_html import tokens_html

    row = (
        Decomposition.objects.filter(sae_id=sae_id, feature_index=feature_index, status=Decomposition.Status.MEASURED)
        .order_by("-updated_at", "-id")
        .only("measurement")
        .first()
    )
    if row is None:
        return "", []
    m = row.measurement
    levels = {c["name"]: c for c in m["verdict"]["components"]}
    components = [
        {
            "name": c["name"],
            "level": levels[c["name"]]["level"],
            "phrases": [
                {"html": tokens_html(p["tokens"], p["values"], m["corpus_max"]), "rel_max": p["rel_max"]}
                for p in c["phrases"]
            ],
        }
        for c in m["components"]
    ]
    html = render_to_string("compute/_decomposition_blind.html", {"components": components})
    return html, [c["name"] for c in components]
