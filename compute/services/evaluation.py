"""Evaluation jobs: the study's comparisons for one SAE.

- reconstruction and loss recovered on a corpus (default: the SAE's training corpus, eval split);
  an SSAE is evaluated added to its GSAE, as in the study;
- feature frequencies on general text (feature rarity);
- novelty: max cosine similarity of each feature's decoder row / encoder column to the GSAE's.

Imported by the web process: torch, sae_lens and compute.ml are imported only inside functions.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute.jobs import JobContext, JobInputError, job_create
from compute.ml.config import ConfigError, EvaluationConfig
from compute.models import SAE, Corpus, Evaluation, Job, JobKind
from compute.services import registry


@dataclass
class EvaluationPlan:
    sae: SAE
    corpus: Corpus
    general_corpus: Corpus | None
    config: EvaluationConfig


def evaluation_plan(params: dict[str, Any]) -> EvaluationPlan:
    """Cheap checks; raise JobInputError saying what to fix."""
    from compute.ml.corpora import CorpusError

    try:
        config = EvaluationConfig.from_params(params)
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc
    try:
        sae = SAE.objects.select_related("language_model", "gsae", "train_corpus").get(pk=int(params.get("sae_id")))
    except (SAE.DoesNotExist, TypeError, ValueError) as exc:
        raise JobInputError("sae_id must name an existing SAE.") from exc
    if not sae.is_usable:
        raise JobInputError(f"SAE {sae.name!r} is {sae.status}: only ready SAEs can be evaluated.")
    if sae.method == SAE.Method.SSAE and (sae.gsae is None or not sae.gsae.is_usable):
        raise JobInputError(f"SSAE {sae.name!r} is evaluated added to its GSAE, which is missing or not ready.")
    corpus_id = params.get("corpus_id") or sae.train_corpus_id
    if not corpus_id:
        raise JobInputError("Choose a corpus to evaluate on (corpus_id).")
    general_id = params.get("general_corpus_id")
    corpora = {}
    for key, pk in (("corpus", corpus_id), ("general", general_id)):
        if not pk:
            continue
        try:
            corpora[key] = Corpus.objects.get(pk=int(pk))
        except (Corpus.DoesNotExist, TypeError, ValueError) as exc:
            raise JobInputError(f"Corpus {pk!r} does not exist.") from exc
        try:
            registry.corpus_check(corpus=corpora[key])
        except CorpusError as exc:
            raise JobInputError(f"Corpus {corpora[key].name!r}: {exc}") from exc
    return EvaluationPlan(sae=sae, corpus=corpora["corpus"], general_corpus=corpora.get("general"), config=config)


def evaluation_start(*, params: dict[str, Any], created_by=None) -> Job:
    evaluation_plan(params)
    return job_create(kind=JobKind.EVALUATE_SAE, params=params, created_by=created_by)


def run_evaluation_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler (kind evaluate_sae, gpu queue)."""
    from compute.ml.corpora import CorpusError
    from compute.ml.lm import default_device

    plan = evaluation_plan(ctx.params)
    sae = plan.sae
    device = str(ctx.params.get("device") or default_device())
    ctx.set_device(device)
    ctx.progress(0.0, f"Loading {sae.language_model.name} on {device}")
    loaded = registry.language_model_load(language_model=sae.language_model, device=device, hook_name=sae.hook_name)
    scratch = registry.job_scratch(prefix=f"eval-{ctx.job.pk}-")
    try:
        return _evaluate(ctx, plan, loaded, device, scratch)
    except (CorpusError, registry.RegistryError) as exc:
        raise JobInputError(str(exc)) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _evaluate(ctx: JobContext, plan: EvaluationPlan, loaded, device: str, scratch: Path) -> dict[str, Any]:
    from compute.ml.activations import activation_stream, window_stream
    from compute.ml.evaluation import (
        feature_frequencies,
        histogram,
        log_frequency_histogram,
        loss_recovered,
        novelty,
        reconstruction_stats,
    )

    sae_record, config = plan.sae, plan.config
    sae = registry.sae_load(sae=sae_record, device=device, scratch=scratch)
    if sae.cfg.d_in != loaded.d_model:
        raise JobInputError(f"SAE {sae_record.name!r} reads width {sae.cfg.d_in}, the model gives {loaded.d_model}.")
    gsae = None
    if sae_record.gsae is not None and sae_record.gsae.is_usable:
        gsae = registry.sae_load(sae=sae_record.gsae, device=device, scratch=scratch)
    stack = [gsae, sae] if sae_record.method == SAE.Method.SSAE else [sae]

    def windows(corpus: Corpus, tokens: int):
        texts = registry.corpus_texts(corpus=corpus, scratch=scratch)
        return window_stream(texts, loaded.tokenizer, split="eval", budget=tokens, context_size=config.context_size)

    def batches(corpus: Corpus, tokens: int):
        return activation_stream(
            registry.corpus_texts(corpus=corpus, scratch=scratch),
            loaded,
            sae_record.hook_name,
            split="eval",
            budget=tokens,
            context_size=config.context_size,
            batch_size=config.batch_size,
        )

    results: dict[str, Any] = {"corpus": plan.corpus.name, "stack": [s.cfg.d_sae for s in stack]}
    ctx.progress(0.1, f"Reconstruction on {plan.corpus.name}")
    try:
        results["reconstruction"] = reconstruction_stats(
            stack, batches(plan.corpus, config.eval_tokens), outlier_norm_factor=config.outlier_norm_factor
        ).as_dict()
        ctx.progress(0.3, f"Loss recovered on {plan.corpus.name}")
        recovered = loss_recovered(
            loaded,
            windows(plan.corpus, config.eval_tokens),
            hook_name=sae_record.hook_name,
            saes=stack,
            gsae=gsae,
            batch_size=config.batch_size,
            outlier_norm_factor=config.outlier_norm_factor,
        )
    except ValueError as exc:
        raise JobInputError(f"Corpus {plan.corpus.name!r} has no evaluation tokens: {exc}") from exc
    results["loss_recovered"] = recovered.as_dict()
    if plan.general_corpus is not None and config.frequency_tokens:
        ctx.progress(0.7, f"Feature frequencies on {plan.general_corpus.name}")
        frequencies, tokens = feature_frequencies(sae, batches(plan.general_corpus, config.frequency_tokens))
        results["frequencies"] = {
            "corpus": plan.general_corpus.name,
            "tokens": tokens,
            "dead": int((frequencies == 0).sum()),
            "median": float(frequencies.median()),
            "log10_histogram": log_frequency_histogram(frequencies),
        }
    if gsae is not None:
        ctx.progress(0.9, "Novelty against the GSAE")
        sims = novelty(sae, gsae)
        results["novelty"] = {
            name: {"mean": float(values.mean()), "histogram": histogram(values, bins=20, low=-0.2, high=1.0)}
            for name, values in sims.items()
        }
    results = json_safe(results)
    evaluation = Evaluation.objects.create(
        sae=sae_record, corpus=plan.corpus, general_corpus=plan.general_corpus, results=results, job=ctx.job
    )
    return {
        "evaluation": evaluation.pk,
        "fvu": results["reconstruction"]["fvu"],
        "l0": results["reconstruction"]["l0"],
        "fraction_vs_zero": results["loss_recovered"]["fraction_vs_zero"],
        "fraction_vs_gsae": results["loss_recovered"]["fraction_vs_gsae"],
    }


def json_safe(value: Any) -> Any:
    """NaN and infinities as None (PostgreSQL's jsonb refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
