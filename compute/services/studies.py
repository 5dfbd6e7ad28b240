"""Studies: create one (by hand, or in one click from a training run) and evaluate all its SAEs at once.

`study_evaluate_start` reuses a stored evaluation whose inputs (SAE weights, corpora, budgets) are
unchanged, joins a queued or running one, or queues an `evaluate_study` job. The job's handler
(`run_study_evaluation_job`) loads the model once and makes one model pass per corpus for every SAE
(compute.ml.study), then stores the numbers (StudyEvaluation.results) and per-feature arrays (one `.npz`
per SAE, FeatureMeasurements). Imported by the web process: torch and compute.ml only inside functions.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.text import slugify

from compute.jobs import JobContext, JobInputError, job_create
from compute.ml.config import ConfigError, StudyConfig, options_of
from compute.models import (
    SAE,
    Corpus,
    FeatureMeasurements,
    Job,
    JobKind,
    JobStatus,
    Study,
    StudyEvaluation,
)
from compute.services import registry
from compute.services.evaluation import json_safe
from config.storage import artifact_replace

METHOD_ORDER = [m.value for m in SAE.Method]


class StudyError(JobInputError):
    """A study that cannot be built or evaluated as asked; the message says what to fix."""


def study_options(values: dict[str, Any] | None) -> dict[str, int]:
    """The study's budgets (a StudyConfig) with defaults filled in; StudyError for a value out of range."""
    values = values or {}
    known = [opt.name for opt in options_of(StudyConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise StudyError(f"Unknown study settings {', '.join(unknown)}; known: {', '.join(known)}.")
    try:
        return StudyConfig.from_params(values).to_params()
    except ConfigError as exc:
        raise StudyError(str(exc)) from exc


@transaction.atomic
def study_create(
    *,
    name: str,
    gsae: SAE,
    domain_corpus: Corpus,
    general_corpus: Corpus,
    saes: list[SAE],
    options: dict[str, Any] | None = None,
    description: str = "",
    training_job: Job | None = None,
    created_by=None,
) -> Study:
    """Record a study; every domain SAE must derive from the GSAE and read the same hook."""
    slug = slugify(name)[:100]
    if not slug:
        raise StudyError("Give the study a name (letters, digits, '-').")
    if Study.objects.filter(name=slug).exists():
        raise StudyError(f"A study named {slug!r} exists already: choose another name.")
    if gsae.method != SAE.Method.GSAE:
        raise StudyError(f"{gsae.name!r} is a {gsae.get_method_display()}, not a GSAE.")
    if not saes:
        raise StudyError("A study needs at least one domain SAE.")
    for sae in saes:
        if sae.method == SAE.Method.GSAE:
            raise StudyError(f"{sae.name!r} is a GSAE: a study compares domain SAEs against one GSAE.")
        if sae.method in (SAE.Method.FINETUNE, SAE.Method.SSAE) and sae.gsae_id != gsae.pk:
            raise StudyError(f"{sae.name!r} was trained from GSAE {sae.gsae!s}, not {gsae.name!r}.")
        if sae.language_model_id != gsae.language_model_id or sae.hook_name != gsae.hook_name:
            raise StudyError(f"{sae.name!r} reads {sae.hook_name} of another model or hook than the GSAE.")
    study = Study.objects.create(
        name=slug,
        description=description[:300],
        gsae=gsae,
        domain_corpus=domain_corpus,
        general_corpus=general_corpus,
        options=study_options(options),
        training_job=training_job,
        created_by=created_by,
    )
    study.saes.set(saes)
    return study


def study_create_from_job(*, job: Job, created_by=None, options: dict[str, Any] | None = None) -> Study:
    """The study of a finished training run (one click). Asking twice returns the same study."""
    existing = Study.objects.filter(training_job=job).first()
    if existing is not None:
        return existing
    if job.kind != JobKind.TRAIN_SAES:
        raise StudyError(f"Job {job.pk} is not a training run.")
    saes = list(SAE.objects.filter(job=job, status=SAE.Status.READY).select_related("gsae", "train_corpus"))
    gsae = next((s for s in saes if s.method == SAE.Method.GSAE), None)
    domain = [s for s in saes if s.method != SAE.Method.GSAE]
    if gsae is None:
        gsae = next((s.gsae for s in domain if s.gsae is not None), None)
    if gsae is None and job.params.get("gsae_id"):
        gsae = SAE.objects.filter(pk=job.params["gsae_id"]).first()
    if gsae is None or not domain:
        raise StudyError(
            f"Job {job.pk} has no finished GSAE and domain SAEs to compare (it is {job.status}); a study needs both."
        )
    domain_corpus = domain[0].train_corpus
    general_corpus = gsae.train_corpus or Corpus.objects.filter(pk=job.params.get("general_corpus_id")).first()
    if general_corpus is None:
        raise StudyError(f"GSAE {gsae.name!r} has no training corpus: create the study by hand and name one.")
    base = job.params.get("name_prefix") or f"job{job.pk}"
    name = f"{base}-{domain_corpus.name}"
    suffix = 2
    while Study.objects.filter(name=slugify(name)).exists():
        name, suffix = f"{base}-{domain_corpus.name}-{suffix}", suffix + 1
    try:
        return study_create(
            name=name,
            gsae=gsae,
            domain_corpus=domain_corpus,
            general_corpus=general_corpus,
            saes=domain,
            options=options,
            training_job=job,
            created_by=created_by,
        )
    except StudyError:
        existing = Study.objects.filter(training_job=job).first()  # a concurrent double click won
        if existing is None:
            raise
        return existing


def study_inputs(study: Study) -> dict[str, Any]:
    """Everything an evaluation's numbers depend on (the fingerprint is a hash of this)."""

    def sae_input(sae: SAE) -> list:
        return [sae.pk, sae.status, sae.artifact_path, sae.pretrained_release, sae.pretrained_id, sae.d_sae]

    def corpus_input(corpus: Corpus) -> list:
        return [corpus.pk, corpus.source, corpus.location, corpus.split, corpus.text_column, str(corpus.upload)]

    return {
        "version": 1,
        "model": [study.gsae.language_model.pk, study.gsae.language_model.location, study.gsae.hook_name],
        "gsae": sae_input(study.gsae),
        "saes": [sae_input(s) for s in study.saes.order_by("pk")],
        "domain_corpus": corpus_input(study.domain_corpus),
        "general_corpus": corpus_input(study.general_corpus),
        "options": study_options(study.options),
    }


def study_fingerprint(study: Study) -> tuple[str, dict[str, Any]]:
    inputs = study_inputs(study)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest(), inputs


@dataclass
class EvaluationRequest:
    """What asking for an evaluation led to: a stored evaluation (reused) or a job computing one."""

    evaluation: StudyEvaluation | None
    job: Job | None

    @property
    def reused(self) -> bool:
        return self.evaluation is not None


def study_evaluation_current(study: Study) -> StudyEvaluation | None:
    """The stored evaluation whose inputs are today's, if any."""
    fingerprint, _ = study_fingerprint(study)
    return study.evaluations.filter(fingerprint=fingerprint).first()


def study_check(study: Study) -> None:
    """Cheap checks before a job: every SAE ready, corpora usable."""
    from compute.ml.corpora import CorpusError

    for sae in [study.gsae, *study.saes.all()]:
        if not sae.is_usable:
            raise StudyError(f"SAE {sae.name!r} is {sae.status}: remove it from the study or train it again.")
    for corpus in (study.domain_corpus, study.general_corpus):
        try:
            registry.corpus_check(corpus=corpus)
        except CorpusError as exc:
            raise StudyError(f"Corpus {corpus.name!r}: {exc}") from exc


def study_evaluate_start(*, study: Study, created_by=None, enqueue: bool = True) -> EvaluationRequest:
    """Reuse the evaluation of unchanged inputs, join one under way, or queue a new job."""
    fingerprint, _ = study_fingerprint(study)
    with transaction.atomic():
        Study.objects.select_for_update().get(pk=study.pk)  # two clicks: the second sees the first's job
        stored = study.evaluations.filter(fingerprint=fingerprint).first()
        if stored is not None:
            return EvaluationRequest(evaluation=stored, job=None)
        running = Job.objects.filter(
            kind=JobKind.EVALUATE_STUDY,
            status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
            params__study_id=study.pk,
            params__fingerprint=fingerprint,
        ).first()
        if running is not None:
            return EvaluationRequest(evaluation=None, job=running)
        study_check(study)
        job = job_create(
            kind=JobKind.EVALUATE_STUDY,
            params={"study_id": study.pk, "fingerprint": fingerprint},
            created_by=created_by,
            enqueue=enqueue,
        )
    return EvaluationRequest(evaluation=None, job=job)


# ----------------------------------------------------------------------------- worker side


def run_study_evaluation_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler (kind evaluate_study, gpu queue)."""
    from compute.ml.corpora import CorpusError
    from compute.ml.lm import default_device

    try:
        study = Study.objects.select_related("gsae__language_model", "domain_corpus", "general_corpus").get(
            pk=int(ctx.params.get("study_id"))
        )
    except (Study.DoesNotExist, TypeError, ValueError) as exc:
        raise JobInputError("study_id must name an existing study.") from exc
    study_check(study)
    fingerprint, inputs = study_fingerprint(study)
    stored = study.evaluations.filter(fingerprint=fingerprint).first()
    if stored is not None:  # a retried or duplicate job: the work is done
        return {"evaluation": stored.pk, "reused": True}
    device = str(ctx.params.get("device") or default_device())
    ctx.set_device(device)
    ctx.progress(0.0, f"Loading {study.gsae.language_model.name} on {device}")
    loaded = registry.language_model_load(
        language_model=study.gsae.language_model, device=device, hook_name=study.gsae.hook_name
    )
    scratch = registry.job_scratch(prefix=f"study-{ctx.job.pk}-")
    try:
        evaluation = _evaluate(ctx, study, loaded, device, scratch, fingerprint, inputs)
    except (CorpusError, registry.RegistryError) as exc:
        raise JobInputError(str(exc)) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = evaluation.results["rows"]
    return {
        "evaluation": evaluation.pk,
        "study": study.name,
        "saes": len(rows),
        "tokens_domain": evaluation.results["domain"]["tokens"],
        "tokens_general": evaluation.results["general"]["tokens"],
    }


def _evaluate(ctx: JobContext, study: Study, loaded, device: str, scratch, fingerprint: str, inputs: dict):
    import numpy as np

    from compute.ml.activations import OutlierCount, activation_stream, window_stream
    from compute.ml.measures import alive_median, fraction_recovered, frequency_summary
    from compute.ml.study import evaluate_domain, firing_counts, novelty_per_feature, random_direction_baseline

    config = StudyConfig.from_params(study_options(study.options))
    batch_size = config.batch_size
    records = [study.gsae, *sorted(study.saes.all(), key=_sae_sort_key)]
    saes = {}
    for record in records:
        ctx.progress(0.02, f"Loading SAE {record.name}")
        sae = registry.sae_load(sae=record, device=device, scratch=scratch)
        if sae.cfg.d_in != loaded.d_model:
            raise StudyError(f"SAE {record.name!r} reads width {sae.cfg.d_in}, the model gives {loaded.d_model}.")
        saes[str(record.pk)] = sae
    gkey = str(study.gsae.pk)
    stacks = {str(r.pk): ([gkey, str(r.pk)] if r.method == SAE.Method.SSAE else [str(r.pk)]) for r in records}

    def texts(corpus: Corpus):
        return registry.corpus_texts(corpus=corpus, scratch=scratch)

    truth = None
    if loaded.info.get("synthetic"):  # a synthetic world: every SAE is also checked against the true features
        from compute.ml.synthetic import StudyTruth

        truth = StudyTruth(loaded.model.world, {key: sae.W_dec for key, sae in saes.items()}, gsae=gkey)

    eval_tokens = config.eval_tokens
    ctx.progress(0.05, f"Losses and reconstruction on {study.domain_corpus.name} (held-out split)")
    try:
        domain = evaluate_domain(
            loaded,
            window_stream(
                texts(study.domain_corpus),
                loaded.tokenizer,
                split="eval",
                budget=eval_tokens,
                context_size=config.context_size,
            ),
            hook_name=study.gsae.hook_name,
            saes=saes,
            stacks=stacks,
            batch_size=batch_size,
            device=device,
            outlier_norm_factor=config.outlier_norm_factor,
            on_batch=lambda done: ctx.progress(
                0.05 + 0.5 * min(done / eval_tokens, 1.0), f"{study.domain_corpus.name}: {done:,} tokens"
            ),
            observe=truth.observe if truth is not None else None,
        )
    except ValueError as exc:
        raise StudyError(f"Corpus {study.domain_corpus.name!r} has no held-out tokens: {exc}") from exc
    frequency_tokens = config.frequency_tokens
    ctx.progress(0.55, f"Feature frequencies on {study.general_corpus.name}")
    general_outliers = OutlierCount(config.outlier_norm_factor)
    try:
        general_fired, general_tokens = firing_counts(
            saes,
            general_outliers.filter_all(
                activation_stream(
                    texts(study.general_corpus),
                    loaded,
                    study.gsae.hook_name,
                    split="all",
                    budget=frequency_tokens,
                    context_size=config.context_size,
                    batch_size=batch_size,
                    device=device,
                )
            ),
            on_batch=lambda done: ctx.progress(
                0.55 + 0.35 * min(done / frequency_tokens, 1.0), f"{study.general_corpus.name}: {done:,} tokens"
            ),
        )
    except ValueError as exc:
        raise StudyError(f"Corpus {study.general_corpus.name!r} has no tokens: {exc}") from exc

    ctx.progress(0.9, "Novelty against the GSAE")
    gsae = saes[gkey]
    baseline = {k: v.numpy() for k, v in random_direction_baseline(gsae).items()}
    folder = f"studies/{study.pk}-{study.name}/{fingerprint[:12]}-job{ctx.job.pk}"
    arrays_by_sae: dict[int, dict[str, np.ndarray]] = {}
    rows = []
    gsae_loss = domain.stacks[gkey].loss
    for record in records:
        key = str(record.pk)
        arrays = {
            "freq_domain": domain.frequencies(key).numpy(),
            "freq_general": (general_fired[key] / general_tokens).numpy(),
        }
        if record.pk != study.gsae.pk:
            arrays.update({f"max_cos_{k}": v.numpy() for k, v in novelty_per_feature(saes[key], gsae).items()})
        arrays_by_sae[record.pk] = arrays
        figures = domain.stacks[key]
        alive = arrays["freq_domain"] > 0
        own_l0 = float(domain.fired[key].sum()) / domain.tokens
        freq_d = frequency_summary(arrays["freq_domain"], domain.tokens)
        freq_g = frequency_summary(arrays["freq_general"], general_tokens)
        health = record.health(eval_fvu=figures.fvu)  # judged on the study's own held-out measurement
        rows.append(
            {
                "sae_id": record.pk,
                "name": record.name,
                "method": record.method,
                "method_label": record.get_method_display(),
                "sparsity": (record.hyperparams or {}).get("sparsity") or "",
                "flags": ", ".join(f["label"] for f in health["flags"]),
                "health": health["flags"],
                "d_sae": record.d_sae,
                "includes_gsae": record.method == SAE.Method.SSAE,
                "l0": figures.l0,
                "l0_own": own_l0,
                "fvu": figures.fvu,
                "mse": figures.mse,
                "loss": figures.loss,
                "fraction_recovered": fraction_recovered(reference=gsae_loss, patched=figures.loss, clean=domain.clean),
                "fraction_vs_zero": fraction_recovered(
                    reference=domain.zero_ablation, patched=figures.loss, clean=domain.clean
                ),
                "dead_domain": freq_d.dead,
                "dead_general": freq_g.dead,
                "median_log10_freq_domain": freq_d.median_log10_alive,
                "median_log10_freq_general": freq_g.median_log10_alive,
                "median_max_cos_decoder": alive_median(arrays["max_cos_decoder"], alive)
                if "max_cos_decoder" in arrays
                else None,
                "median_max_cos_encoder": alive_median(arrays["max_cos_encoder"], alive)
                if "max_cos_encoder" in arrays
                else None,
            }
        )
    extra: dict[str, Any] = {"loss_kind": "cross_entropy"}
    if truth is not None:
        checked = truth.rows()
        for row in rows:
            row.update(checked["rows"][str(row["sae_id"])])
        from compute.ml.measures import seed_claims

        extra = {
            "loss_kind": "explained_variance",
            "truth": {**{k: v for k, v in checked.items() if k != "rows"}, "claims": seed_claims(rows)},
        }
    results = json_safe(
        {
            **extra,
            "model": study.gsae.language_model.name,
            "hook_name": study.gsae.hook_name,
            "options": config.to_params(),
            "domain": {
                "corpus": study.domain_corpus.name,
                "split": "eval",
                "tokens": domain.tokens,
                "loss_tokens": domain.loss_tokens,
                "resolution": 1.0 / domain.tokens,
                "excluded_positions": domain.excluded_positions,
                "excluded_share": domain.excluded_share,
            },
            "general": {
                "corpus": study.general_corpus.name,
                "split": "all",
                "tokens": general_tokens,
                "resolution": 1.0 / general_tokens,
                "excluded_positions": general_outliers.excluded,
                "excluded_share": general_outliers.share,
            },
            "losses": {"clean": domain.clean, "zero_ablation": domain.zero_ablation, "gsae": gsae_loss},
            "baseline": {
                "n": int(baseline["decoder"].size),
                "median_max_cos_decoder": float(np.median(baseline["decoder"])),
                "median_max_cos_encoder": float(np.median(baseline["encoder"])),
            },
            "rows": rows,
            # The SAEs whose figures it would be unwise to compare with the others', and why.
            "unwise": [
                {"sae_id": row["sae_id"], "name": row["name"], "flags": row["health"]} for row in rows if row["health"]
            ],
        }
    )
    ctx.progress(0.97, "Storing the per-feature measurements")
    paths = {pk: _save_npz(f"{folder}/sae-{pk}.npz", arrays) for pk, arrays in arrays_by_sae.items()}
    baseline_path = _save_npz(
        f"{folder}/baseline.npz",
        {"max_cos_decoder": baseline["decoder"], "max_cos_encoder": baseline["encoder"]},
    )
    results["baseline"]["path"] = baseline_path
    with transaction.atomic():
        evaluation = StudyEvaluation.objects.create(
            study=study, fingerprint=fingerprint, inputs=inputs, job=ctx.job, results=results, artifact_path=folder
        )
        FeatureMeasurements.objects.bulk_create(
            FeatureMeasurements(
                sae_id=pk,
                evaluation=evaluation,
                domain_corpus=study.domain_corpus,
                general_corpus=study.general_corpus,
                path=path,
            )
            for pk, path in paths.items()
        )
    return evaluation


def _sae_sort_key(sae: SAE) -> tuple:
    """Method, then the sparsity setting whichever architecture names it (L1 or L0 coefficient, or k)."""
    hp = sae.hyperparams or {}
    values = [hp.get(name) for name in ("l1_coefficient", "l0_coefficient", "k")]
    sparsity = next((v for v in values if isinstance(v, int | float)), 0)
    return (METHOD_ORDER.index(sae.method), sparsity, sae.pk)


def _save_npz(key: str, arrays: dict) -> str:
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
    return artifact_replace(key, ContentFile(buffer.getvalue()))
