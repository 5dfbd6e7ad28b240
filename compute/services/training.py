"""Training jobs: the GSAE on general text, then GSAE-finetune, Direct SAE and SSAE on a domain corpus.

`training_start` validates and queues a job (web side); `run_training_job` is its handler (gpu
queue). Every SAE of a run gets a record with status TRAINING as soon as the model is loaded; it
becomes READY only once its weights are in artifact storage (a phase's SAEs together), and a failed
or cancelled run marks the rest FAILED. Training saves checkpoints to artifact storage
(`checkpoints/job-<id>/`, the job's stats point at the latest of each phase); an attempt that follows a
lost or stopped one reuses the SAE records, skips a finished phase and resumes the other from its
checkpoint. The options are a `compute.ml.config.TrainingConfig`. Imported by the web process:
torch, sae_lens and compute.ml are imported only inside functions (apart from the torch-free
compute.ml.choices and compute.ml.config).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction

from compute.jobs import JobContext, JobInputError, JobInterrupted, JobStopRequested, job_create
from compute.ml.choices import BLOCK_HOOK_RE, K_ARCHITECTURES, default_hook_name
from compute.ml.config import GIB, ConfigError, TrainingConfig, machine_memory_bytes
from compute.models import SAE, Corpus, Job, JobKind, LanguageModel
from compute.services import registry
from config.storage import artifact_fetch, artifact_replace, artifact_storage

_CHECKPOINTS = "checkpoints"


@dataclass
class TrainingPlan:
    """Validated job input: the records it names and the typed options."""

    language_model: LanguageModel
    hook_name: str
    general_corpus: Corpus | None
    domain_corpus: Corpus | None
    gsae: SAE | None  # an existing GSAE (None when this run trains one)
    config: TrainingConfig

    @property
    def methods(self) -> tuple[str, ...]:
        return self.config.methods

    @property
    def domain_methods(self) -> list[str]:
        return self.config.domain_methods


def _get(model, pk: Any, what: str):
    if pk in (None, ""):
        return None
    try:
        return model.objects.get(pk=int(pk))
    except (model.DoesNotExist, ValueError, TypeError) as exc:
        raise JobInputError(f"{what} {pk!r} does not exist: choose an existing one.") from exc


def memory_limit_bytes(device: str = "cpu") -> int:
    """What a run's SAEs may take: TRAINING_MEMORY_LIMIT_GIB, else this machine's memory (a GPU's own on CUDA)."""
    limit = settings.TRAINING_MEMORY_LIMIT_GIB * GIB or machine_memory_bytes()
    if device.startswith("cuda"):
        import torch

        limit = min(limit, torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return limit


def training_config(params: dict[str, Any]) -> TrainingConfig:
    """The typed options of a job's params; JobInputError saying what to fix."""
    try:
        return TrainingConfig.from_params(params)
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc


def check_sizes(config: TrainingConfig, *, d_in: int, gsae_d_sae: int | None, device: str = "cpu") -> None:
    """Refuse k above a width, or SAEs that would not fit in memory (the message names what they need)."""
    try:
        config.check_widths(d_in=d_in)
        config.check_memory(d_in=d_in, gsae_d_sae=gsae_d_sae, limit_bytes=memory_limit_bytes(device))
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc


def training_plan(params: dict[str, Any]) -> TrainingPlan:
    """Check everything that is cheap to check (no model, no weights); raise JobInputError saying what to fix."""
    from compute.ml.corpora import CorpusError

    config = training_config(params)
    methods = config.methods
    language_model = _get(LanguageModel, params.get("language_model_id"), "Language model")
    if language_model is None:
        raise JobInputError("Choose a language model (language_model_id).")
    general_corpus = _get(Corpus, params.get("general_corpus_id"), "Corpus")
    domain_corpus = _get(Corpus, params.get("domain_corpus_id"), "Corpus")
    gsae = _get(SAE, params.get("gsae_id"), "SAE")
    if "gsae" in methods:
        if general_corpus is None:
            raise JobInputError("Training a GSAE needs a general corpus (general_corpus_id).")
        if gsae is not None:
            raise JobInputError("Either train a GSAE (method gsae) or choose an existing one (gsae_id), not both.")
    domain = config.domain_methods
    if domain and domain_corpus is None:
        raise JobInputError(f"{', '.join(domain)} need a domain corpus (domain_corpus_id).")
    needs_gsae = [m for m in domain if m in TrainingConfig.GSAE_METHODS]
    if needs_gsae and gsae is None and "gsae" not in methods:
        raise JobInputError(
            f"{' and '.join(m.upper() if m == 'ssae' else 'GSAE-finetune' for m in needs_gsae)} need a GSAE: "
            "choose one (gsae_id) or add method gsae to train one first."
        )

    n_layers = language_model.info.get("n_layers")
    hook_name = config.hook_name or (gsae.hook_name if gsae else "") or language_model.default_hook
    if not hook_name and n_layers:
        hook_name = default_hook_name(int(n_layers))
    # Still blank: the model's mid-depth residual stream, decided once the model is loaded.
    block = BLOCK_HOOK_RE.match(hook_name)
    if block and n_layers and int(block.group(1)) >= int(n_layers):
        raise JobInputError(
            f"Model {language_model.name!r} has {n_layers} blocks (0-{int(n_layers) - 1}): hook {hook_name!r} "
            "does not exist."
        )

    d_model = language_model.info.get("d_model")
    if gsae is not None:
        if not gsae.is_usable:
            raise JobInputError(f"GSAE {gsae.name!r} is {gsae.status}: choose a ready SAE.")
        if gsae.language_model_id != language_model.pk:
            raise JobInputError(
                f"GSAE {gsae.name!r} was trained on model {gsae.language_model.name!r}, not {language_model.name!r}."
            )
        if gsae.hook_name != hook_name:
            raise JobInputError(f"GSAE {gsae.name!r} reads hook {gsae.hook_name!r}, not {hook_name!r}: use its hook.")
        if d_model and gsae.d_in != int(d_model):
            raise JobInputError(
                f"GSAE {gsae.name!r} has width {gsae.d_in} but {hook_name!r} of {language_model.name!r} gives "
                f"{d_model}: choose a GSAE trained on this model."
            )
        if "finetune" in methods and gsae.architecture != config.architecture:
            raise JobInputError(
                f"GSAE {gsae.name!r} is a {gsae.architecture} SAE: fine-tune it with architecture {gsae.architecture!r}."
            )
    if d_model:  # else checked on the worker once the model is loaded
        check_sizes(config, d_in=int(d_model), gsae_d_sae=gsae.d_sae if gsae else None)

    for corpus in (general_corpus if "gsae" in methods else None, domain_corpus if domain else None):
        if corpus is None:
            continue
        try:
            registry.corpus_check(corpus=corpus)
        except CorpusError as exc:
            raise JobInputError(f"Corpus {corpus.name!r}: {exc}") from exc

    return TrainingPlan(
        language_model=language_model,
        hook_name=hook_name,
        general_corpus=general_corpus if "gsae" in methods else None,
        domain_corpus=domain_corpus if domain else None,
        gsae=gsae,
        config=config,
    )


def training_start(*, params: dict[str, Any], created_by=None) -> Job:
    """Validate the input now (so the form can say what is wrong) and queue a train_saes job.

    The job's params record every option, defaults included, so a run says what it was asked for.
    """
    plan = training_plan(params)
    return job_create(kind=JobKind.TRAIN_SAES, params={**params, **plan.config.to_params()}, created_by=created_by)


# ----------------------------------------------------------------------------- worker side


def run_training_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler (kind train_saes, gpu queue)."""
    from compute.ml.corpora import CorpusError
    from compute.ml.lm import default_device

    plan = training_plan(ctx.params)
    device = str(ctx.params.get("device") or default_device())
    ctx.set_device(device)
    ctx.progress(0.0, f"Loading {plan.language_model.name} on {device}")
    lm = plan.language_model
    loaded = registry.language_model_load(language_model=lm, device=device)
    plan.hook_name = plan.hook_name or loaded.default_hook_name()
    if not loaded.has_hook(plan.hook_name):
        resid = [f"blocks.{i}.hook_resid_post" for i in (0, loaded.n_layers // 2, loaded.n_layers - 1)]
        raise JobInputError(f"Model {lm.name!r} has no hook {plan.hook_name!r}; e.g. {', '.join(resid)}.")
    if plan.gsae is not None and plan.gsae.d_in != loaded.d_model:
        raise JobInputError(
            f"GSAE {plan.gsae.name!r} has width {plan.gsae.d_in} but the model gives {loaded.d_model}: choose a "
            "GSAE trained on this model."
        )
    check_sizes(plan.config, d_in=loaded.d_model, gsae_d_sae=plan.gsae.d_sae if plan.gsae else None, device=device)
    if not lm.info.get("d_model"):
        LanguageModel.objects.filter(pk=lm.pk).update(info={**lm.info, **loaded.info})
    for corpus in (plan.general_corpus, plan.domain_corpus):
        # The corpus page shows token counts; a first run on a corpus (or on its changed files) fills them in.
        if corpus is not None and registry.corpus_token_counts(corpus=corpus, language_model=lm) is None:
            ctx.progress(0.0, f"Counting the tokens of {corpus.name}")
            try:
                registry.corpus_count_tokens(
                    corpus=corpus,
                    language_model=lm,
                    context_size=plan.config.context_size,
                    tokenizer=loaded.tokenizer,
                )
            except CorpusError as exc:
                raise JobInputError(f"Corpus {corpus.name!r}: {exc}") from exc

    ctx.handles_stop = True  # the training loop checkpoints, then stops
    scratch = registry.job_scratch(prefix=f"train-{ctx.job.pk}-")
    run = _Run(ctx=ctx, plan=plan, loaded=loaded, device=device, scratch=scratch)
    try:
        return run.execute()
    except JobInterrupted:
        raise  # the job goes on in another attempt, with these SAEs and their checkpoint
    except BaseException as exc:
        registry.sae_mark_failed(sae_ids=run.sae_ids, reason=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Run:
    """One training job's state: the records it created and the tokens done so far."""

    def __init__(self, *, ctx: JobContext, plan: TrainingPlan, loaded: Any, device: str, scratch: Path) -> None:
        self.ctx = ctx
        self.plan = plan
        self.loaded = loaded
        self.device = device
        self.scratch = scratch
        self.sae_ids: list[int] = []
        self.live_curves: dict[str, list[dict[str, Any]]] = {}  # per SAE key, shown live on the job's page
        self.tokens_before_phase = 0
        self.fraction = 0.0
        self.resumed_from_tokens = 0
        self.started = time.monotonic()

    @property
    def prefix(self) -> str:
        return self.plan.config.name_prefix or f"job{self.ctx.job.pk}"

    def execute(self) -> dict[str, Any]:
        from compute.ml.corpora import CorpusError
        from compute.ml.training import TrainingInputError

        plan = self.plan
        result: dict[str, Any] = {"saes": [], "device": self.device, "hook_name": plan.hook_name}
        try:
            gsae_record = plan.gsae
            gsae = None
            if "gsae" in plan.methods:
                gsae_record, gsae = self.train_gsae()
                result["saes"].append(gsae_record.pk)
            if plan.domain_methods:
                if gsae is None and gsae_record is not None:
                    gsae = self.load_gsae(gsae_record)
                result["saes"] += self.train_domain(gsae_record, gsae)
        except (CorpusError, TrainingInputError, registry.RegistryError) as exc:
            raise JobInputError(str(exc)) from exc
        result["elapsed_s"] = round(time.monotonic() - self.started, 1)
        result["tokens"] = plan.config.total_tokens
        result["resumed_from_tokens"] = self.resumed_from_tokens
        _checkpoints_remove(self.ctx.job)
        return result

    def load_gsae(self, record: SAE):
        gsae = registry.sae_load(sae=record, device=self.device, scratch=self.scratch)
        if gsae.cfg.d_in != self.loaded.d_model:
            raise JobInputError(
                f"GSAE {record.name!r} weights read {gsae.cfg.d_in}-dimensional activations but the hook gives "
                f"{self.loaded.d_model}: choose a GSAE trained on this model."
            )
        return gsae

    def batches(self, corpus: Corpus, split: str, budget: int | None = None, skip_batches: int = 0):
        """Activations of the corpus's split at the run's hook (budget: tokens; None for the whole split)."""
        from compute.ml.activations import activation_stream

        config = self.plan.config
        return activation_stream(
            registry.corpus_texts(corpus=corpus, scratch=self.scratch),
            self.loaded,
            self.plan.hook_name,
            split=split,
            budget=budget,
            context_size=config.context_size,
            batch_size=config.batch_size,
            device=self.device,
            skip_batches=skip_batches,
        )

    def create_records(self, specs, *, corpus: Corpus, gsae_record: SAE | None) -> dict[str, SAE]:
        from compute.ml.training import autocast_dtype

        records = {}
        config = self.plan.config
        precision = autocast_dtype(self.device, config.precision)
        for spec in specs:
            name = f"{self.prefix}-{corpus.name}-{spec.key}"
            existing = SAE.objects.filter(name=name).first()
            if existing is not None and existing.job_id == self.ctx.job.pk:  # an earlier attempt's: carry on
                SAE.objects.filter(pk=existing.pk).exclude(status=SAE.Status.READY).update(status=SAE.Status.TRAINING)
                existing.refresh_from_db()
                records[spec.key] = existing
                self.sae_ids.append(existing.pk)
                continue
            if existing is not None and registry.sae_make_way(name=name):  # another run's failed record
                existing = None
            if existing is not None:
                raise JobInputError(f"An SAE named {name!r} exists already: choose another name_prefix.")
            records[spec.key] = SAE.objects.create(
                name=name,
                method=spec.method,
                architecture=spec.architecture,
                status=SAE.Status.TRAINING,
                language_model=self.plan.language_model,
                hook_name=self.plan.hook_name,
                d_in=self.loaded.d_model,
                d_sae=spec.d_sae,
                gsae=gsae_record if spec.method != "gsae" else None,
                train_corpus=corpus,
                hyperparams={
                    "lr": spec.lr,
                    "l1_coefficient": spec.l1_coefficient if spec.architecture == "standard" else None,
                    "k": spec.k if spec.architecture in K_ARCHITECTURES else None,
                    "l0_coefficient": spec.l0_coefficient if spec.architecture == "jumprelu" else None,
                    "sparsity": spec.sparsity_label,
                    "expansion": spec.d_sae / self.loaded.d_model,
                    "context_size": config.context_size,
                    "tokens": config.gsae_tokens if spec.method == "gsae" else config.domain_tokens,
                    "minibatch_tokens": config.minibatch_tokens,
                    "seed": config.seed,
                    "precision": "bfloat16" if precision is not None else "float32",
                    "run_key": spec.key,
                },
                job=self.ctx.job,
            )
            self.sae_ids.append(records[spec.key].pk)
        return records

    def on_progress(self, phase: str):
        total = max(self.plan.config.total_tokens, 1)

        def report(progress) -> None:
            done = self.tokens_before_phase + progress.tokens_done
            stats: dict[str, Any] = {
                "phase": phase,
                "tokens": f"{done:,} / {total:,}",
                "tokens_done": done,
                "tokens_total": total,
                "tokens_per_s": round(progress.tokens_done / max(progress.elapsed_s, 1e-6)),
            }
            for key, sae_stats in progress.saes.items():
                stats[key] = _summary(sae_stats)
                points = self.live_curves.setdefault(key, [])
                points.append({"tokens": done, **{k: sae_stats.get(k) for k in ("loss", "mse", "fvu", "l0")}})
                if len(points) > 200:  # thin evenly: the page draws the whole run
                    del points[1::2]
            stats["curves"] = self.live_curves
            self.fraction = 0.97 * done / total
            self.ctx.progress(self.fraction, f"{phase}: {done:,} of {total:,} tokens", **stats)

        return report

    def train_gsae(self):
        from compute.ml.training import gsae_spec

        plan, config = self.plan, self.plan.config
        spec = gsae_spec(
            architecture=config.architecture,
            d_in=self.loaded.d_model,
            expansion=config.gsae_expansion,
            l1_coefficient=config.gsae_l1_coefficient,
            k=config.gsae_k,
            l0_coefficient=config.gsae_l0_coefficient,
            lr=config.lr,
        )
        records = self.create_records([spec], corpus=plan.general_corpus, gsae_record=None)
        saes = self.train_phase(
            "gsae", [spec], records, corpus=plan.general_corpus, tokens=config.gsae_tokens, gsae=None,
            label="GSAE on " + plan.general_corpus.name,
        )  # fmt: skip
        return records[spec.key], saes[spec.key]

    def train_domain(self, gsae_record: SAE | None, gsae) -> list[int]:
        from compute.ml.training import sweep_specs

        plan, config = self.plan, self.plan.config
        specs = sweep_specs(
            methods=config.domain_methods,
            architecture=config.architecture,
            d_in=self.loaded.d_model,
            expansion=config.domain_expansion,
            lr=config.lr,
            finetune_lr=config.finetune_lr,
            gsae_d_sae=gsae.cfg.d_sae if gsae is not None else None,
            **{config.sweep_key: config.sweep},
        )
        records = self.create_records(specs, corpus=plan.domain_corpus, gsae_record=gsae_record)
        self.train_phase(
            "domain", specs, records, corpus=plan.domain_corpus, tokens=config.domain_tokens, gsae=gsae,
            label="domain SAEs on " + plan.domain_corpus.name,
        )  # fmt: skip
        return [records[spec.key].pk for spec in specs]

    def train_phase(
        self, phase: str, specs, records: dict[str, SAE], *, corpus: Corpus, tokens: int, gsae, label: str
    ) -> dict[str, Any]:
        """Train one phase's SAEs from one model pass, resuming from its checkpoint when an earlier attempt
        left one, and saving checkpoints as TRAIN_CHECKPOINT_EVERY_TOKENS/_S say (and on a stop request).
        A phase an earlier attempt finished is not trained again. Returns the inference SAEs by spec key."""
        from compute.ml.training import CheckpointPolicy, Schedule, TrainingStopped, run_training

        config = self.plan.config
        if all(record.status == SAE.Status.READY for record in records.values()):
            self.tokens_before_phase += tokens
            return {key: self.load_gsae(record) if key.startswith("gsae") else registry.sae_load(
                sae=record, device=self.device, scratch=self.scratch) for key, record in records.items()}  # fmt: skip
        resume = self.load_checkpoint(phase)
        policy = CheckpointPolicy(
            save=lambda checkpoint: self.save_checkpoint(phase, checkpoint),
            every_tokens=settings.TRAIN_CHECKPOINT_EVERY_TOKENS,
            every_s=settings.TRAIN_CHECKPOINT_EVERY_S,
            stop_requested=lambda: self.ctx.stop_requested,
        )
        try:
            trainers, progress = run_training(
                batches=self.batches(corpus, "train", skip_batches=resume.position.batches_done if resume else 0),
                specs=specs,
                d_in=self.loaded.d_model,
                total_tokens=tokens,
                device=self.device,
                gsae=gsae,
                minibatch_tokens=config.minibatch_tokens,
                seed=config.seed,
                metadata=self.metadata(),
                checkpoints=policy,
                resume=resume,
                precision=config.precision,
                schedule=Schedule.of(config),
                outlier_norm_factor=config.outlier_norm_factor,
                on_progress=self.on_progress(label),
            )
        except TrainingStopped as exc:
            raise JobStopRequested(f"{label}: {exc}") from exc
        self.tokens_before_phase += tokens
        saes = self.finish(trainers, records, progress, eval_corpus=corpus, gsae=gsae)
        if previous := self.ctx.job.stats.get(f"checkpoint_{phase}"):  # the phase's SAEs are saved: not needed
            self.ctx.progress(self.fraction, f"{label}: done", **{f"checkpoint_{phase}": None})
            _checkpoint_delete(previous)
        return saes

    def save_checkpoint(self, phase: str, checkpoint) -> None:
        """Write the checkpoint to artifact storage under a new name, point the job at it (only if this attempt
        still owns the job), then remove the one before."""
        job = self.ctx.job
        previous = job.stats.get(f"checkpoint_{phase}")
        tokens = checkpoint.position.tokens_done
        key = _checkpoint_store(
            checkpoint.save(self.scratch / f"checkpoint-{phase}.pt"),
            f"{_CHECKPOINTS}/job-{job.pk}/{phase}-{tokens}-attempt{job.attempt}.pt",
        )
        done = self.tokens_before_phase + tokens
        self.ctx.progress(
            self.fraction,
            f"Checkpoint saved at {done:,} tokens",
            **{f"checkpoint_{phase}": key, "checkpoint_tokens": done},
        )
        if previous and previous != key:
            _checkpoint_delete(previous)

    def load_checkpoint(self, phase: str):
        """The phase's checkpoint an earlier attempt of this job saved, or None."""
        from compute.ml.training import TrainingCheckpoint

        key = self.ctx.job.stats.get(f"checkpoint_{phase}")
        if not key or not artifact_storage().exists(key):
            return None
        local = artifact_fetch(key, self.scratch / "resume.pt")
        checkpoint = TrainingCheckpoint.load(local, device=self.device)
        local.unlink()
        tokens = checkpoint.position.tokens_done
        self.resumed_from_tokens = self.tokens_before_phase + tokens
        self.ctx.progress(
            self.fraction, f"Resuming from the checkpoint at {self.resumed_from_tokens:,} tokens",
            resumed_from_tokens=self.resumed_from_tokens,
        )  # fmt: skip
        return checkpoint

    def metadata(self) -> dict[str, Any]:
        """What sae-lens's own runners write into cfg.json, as far as it holds for our runs."""
        lm = self.plan.language_model
        return {
            # The name users know the model by (e.g. its Hugging Face name), and how we loaded it.
            "model_name": lm.info.get("hf_name") or (lm.location if lm.source == lm.Source.HUB else lm.name),
            "model_class_name": "TransformerBridge",
            "model_load": {
                "registry_name": lm.name,
                "source": lm.source,
                "location": lm.location,
                "gguf_file": lm.gguf_file or None,
            },  # fmt: skip
            "hook_name": self.plan.hook_name,
            "context_size": self.plan.config.context_size,
            "prepend_bos": True,
            "exclude_special_tokens": True,
            "seed": self.plan.config.seed,
        }

    def save_metadata(self, trainer, *, corpus: Corpus, gsae, gsae_record: SAE | None) -> dict[str, Any]:
        """Per SAE: the dataset it was trained on and, for an SSAE, the GSAE it must be used with."""
        from compute.ml.saes import gsae_reference

        extra: dict[str, Any] = {"dataset_path": corpus.location, "dataset_name": corpus.name}
        if trainer.spec.method == "ssae" and gsae is not None and gsae_record is not None:
            extra.update(gsae_reference(gsae, name=gsae_record.name))
        return extra

    def finish(self, trainers, records: dict[str, SAE], progress, *, eval_corpus: Corpus, gsae) -> dict[str, Any]:
        """Save each SAE's weights, measure all of them on the eval split in one pass, then mark them READY."""
        from sae_lens import SAE as LensSAE

        from compute.ml.evaluation import reconstruction_stats_many
        from compute.ml.training import save_trained_sae

        config = self.plan.config
        fraction = 0.97 * self.tokens_before_phase / max(config.total_tokens, 1)
        saes = {}
        for trainer in trainers:
            record = records[trainer.spec.key]
            self.ctx.progress(fraction, f"Saving {record.name}")
            extra = self.save_metadata(trainer, corpus=eval_corpus, gsae=gsae, gsae_record=record.gsae)
            folder = save_trained_sae(trainer, self.scratch / f"sae-{record.pk}", metadata=extra)
            record.artifact_path = registry.sae_save_artifacts(sae=record, folder=folder)
            saes[trainer.spec.key] = LensSAE.load_from_disk(folder, device=self.device)
        evaluations: dict[str, Any] = {}
        if config.eval_tokens:
            self.ctx.progress(fraction, f"Measuring on the eval split of {eval_corpus.name}")
            stacks = {key: ([gsae, sae] if key.startswith("ssae") else [sae]) for key, sae in saes.items()}
            try:
                measured = reconstruction_stats_many(
                    stacks,
                    self.batches(eval_corpus, "eval", config.eval_tokens),
                    outlier_norm_factor=config.outlier_norm_factor,
                )
                evaluations = {key: stats.as_dict() for key, stats in measured.items()}
            except ValueError:
                evaluations = {key: {"note": "the eval split of this corpus is empty"} for key in saes}
        with transaction.atomic():  # the phase's SAEs become ready together, or none does
            for trainer in trainers:
                record = records[trainer.spec.key]
                stats: dict[str, Any] = {
                    "train": trainer.stats.as_dict(),
                    "curve": trainer.curve.points,
                    "activation_scale": trainer.scale,
                    "outliers": progress.outliers,  # positions of the training stream left out for their norms
                    "train_tokens_per_s": round(progress.tokens_done / max(progress.elapsed_s, 1e-6)),
                    "device": self.device,
                }
                if trainer.spec.key in evaluations:
                    stats["eval"] = {**evaluations[trainer.spec.key], "corpus": eval_corpus.name}
                    if trainer.spec.method == "ssae":
                        stats["eval"]["includes_gsae"] = True
                record.stats = stats
                record.status = SAE.Status.READY
                record.save(update_fields=["artifact_path", "stats", "status"])
        return saes


def _summary(stats: dict[str, Any]) -> str:
    def fmt(value: Any) -> str:
        return "–" if value is None else f"{value:.3g}"

    return (
        f"loss {fmt(stats.get('loss'))} · mse {fmt(stats.get('mse'))} · fvu {fmt(stats.get('fvu'))} · "
        f"L0 {fmt(stats.get('l0'))} · dead {stats.get('dead', 0)}"
    )


def _checkpoint_store(local: Path, key: str) -> str:
    """Copy a local checkpoint file into artifact storage under `key` (replacing one there) and remove it."""
    with local.open("rb") as handle:
        saved = artifact_replace(key, File(handle, name=local.name))
    local.unlink()
    return saved


def _checkpoint_delete(key: str) -> None:
    storage = artifact_storage()
    if storage.exists(key):
        storage.delete(key)


def _checkpoints_remove(job: Job) -> None:
    """Remove whatever checkpoints of the job are left (the job succeeded: its SAEs are saved)."""
    storage = artifact_storage()
    folder = f"{_CHECKPOINTS}/job-{job.pk}"
    try:
        _, files = storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        storage.delete(f"{folder}/{name}")
