"""`python manage.py train ...`: the train_saes job from the shell, with a tqdm bar (Ctrl-C cancels)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compute.jobs import JobInputError, job_create
from compute.ml.config import TrainingConfig
from compute.models import SAE, Corpus, JobKind, JobStatus, LanguageModel
from compute.services import registry
from compute.services.training import training_plan

from ._follow import follow_job
from ._options import add_config_arguments, config_params


class Command(BaseCommand):
    help = "Train a GSAE and/or the domain SAEs (GSAE-finetune, Direct, SSAE) with a sparsity sweep."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", default=registry.DEFAULT_MODEL_NAME, help="LanguageModel name")
        parser.add_argument("--general", help="general corpus name (to train a GSAE)")
        parser.add_argument("--domain", help="domain corpus name")
        parser.add_argument("--gsae", help="an existing GSAE (SAE name or id)")
        add_config_arguments(
            parser,
            TrainingConfig,
            hook_name="--hook",
            l1_coefficients="--l1",
            ks="--k",
            gsae_l1_coefficient="--gsae-l1",
            l0_coefficients="--l0",
            gsae_l0_coefficient="--gsae-l0",
        )
        parser.add_argument("--queue", action="store_true", help="queue for a Celery worker instead of running here")

    def handle(self, *args, **o) -> None:
        params = {
            "language_model_id": _pk(LanguageModel, o["model"]),
            "general_corpus_id": _pk(Corpus, o["general"]),
            "domain_corpus_id": _pk(Corpus, o["domain"]),
            "gsae_id": _pk(SAE, o["gsae"]),
            **config_params(o, TrainingConfig),
        }
        try:
            plan = training_plan(params)
        except JobInputError as exc:
            raise CommandError(str(exc)) from exc
        params.update(plan.config.to_params())
        job = job_create(kind=JobKind.TRAIN_SAES, params=params, enqueue=o["queue"])
        self.stdout.write(f"Job {job.pk}: {'queued' if o['queue'] else 'running here'}")
        job = follow_job(job=job, inline=not o["queue"])
        for sae in SAE.objects.filter(job=job):
            stats = sae.stats.get("eval") or {}
            fvu, l0 = stats.get("fvu"), stats.get("l0")
            figures = f"eval fvu {fvu:.3f} · L0 {l0:.1f}" if fvu is not None and l0 is not None else ""
            self.stdout.write(f"  SAE {sae.pk} {sae.name} [{sae.status}] {figures}")
            if sae.status == SAE.Status.READY:
                for flag in sae.health()["flags"]:
                    self.stdout.write(f"    {flag['label'].upper()}: {flag['reason']}")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Job {job.pk} {job.status}: {job.error or job.message}")


def _pk(model, value: str | None) -> int | None:
    if not value:
        return None
    if value.isdigit():
        return int(value)
    found = model.objects.filter(name=value).values_list("pk", flat=True).first()
    if found is None:
        raise CommandError(f"No {model._meta.verbose_name} named {value!r}.")
    return found
