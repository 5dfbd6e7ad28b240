"""`python manage.py train ...`: the train_saes job from the shell, with a tqdm bar (Ctrl-C cancels)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compute.jobs import JobInputError, job_create
from compute.models import SAE, Corpus, JobKind, JobStatus, LanguageModel
from compute.services import registry
from compute.services.training import DEFAULTS, PRECISIONS, training_plan

from ._follow import follow_job


class Command(BaseCommand):
    help = "Train a GSAE and/or the domain SAEs (GSAE-finetune, Direct, SSAE) with a sparsity sweep."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", default=registry.DEFAULT_MODEL_NAME, help="LanguageModel name")
        parser.add_argument(
            "--methods", nargs="+", default=DEFAULTS["methods"], choices=["gsae", "finetune", "direct", "ssae"]
        )
        parser.add_argument("--general", help="general corpus name (to train a GSAE)")
        parser.add_argument("--domain", help="domain corpus name")
        parser.add_argument("--gsae", help="an existing GSAE (SAE name or id)")
        parser.add_argument("--architecture", default="standard", choices=["standard", "topk"])
        parser.add_argument("--hook", default="", help="hook name (default: the model's mid-depth resid_post)")
        parser.add_argument("--l1", type=float, nargs="+", default=DEFAULTS["l1_coefficients"])
        parser.add_argument("--k", type=int, nargs="+", default=DEFAULTS["ks"])
        parser.add_argument("--gsae-l1", type=float, default=DEFAULTS["gsae_l1_coefficient"])
        parser.add_argument("--gsae-k", type=int, default=DEFAULTS["gsae_k"])
        parser.add_argument("--gsae-expansion", type=int, default=DEFAULTS["gsae_expansion"])
        parser.add_argument("--domain-expansion", type=int, default=DEFAULTS["domain_expansion"])
        parser.add_argument("--gsae-tokens", type=int, default=DEFAULTS["gsae_tokens"])
        parser.add_argument("--domain-tokens", type=int, default=DEFAULTS["domain_tokens"])
        parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
        parser.add_argument("--finetune-lr", type=float, default=DEFAULTS["finetune_lr"])
        parser.add_argument("--context-size", type=int, default=DEFAULTS["context_size"])
        parser.add_argument("--name-prefix", default="")
        parser.add_argument(
            "--precision",
            default=DEFAULTS["precision"],
            choices=PRECISIONS,
            help="SAE training matmuls: auto = bfloat16 where the hardware has it natively, else float32",
        )
        parser.add_argument("--queue", action="store_true", help="queue for a Celery worker instead of running here")

    def handle(self, *args, **o) -> None:
        params = {
            "language_model_id": _pk(LanguageModel, o["model"]),
            "general_corpus_id": _pk(Corpus, o["general"]),
            "domain_corpus_id": _pk(Corpus, o["domain"]),
            "gsae_id": _pk(SAE, o["gsae"]),
            "methods": o["methods"],
            "architecture": o["architecture"],
            "hook_name": o["hook"],
            "l1_coefficients": o["l1"],
            "ks": o["k"],
            "gsae_l1_coefficient": o["gsae_l1"],
            "gsae_k": o["gsae_k"],
            "gsae_expansion": o["gsae_expansion"],
            "domain_expansion": o["domain_expansion"],
            "gsae_tokens": o["gsae_tokens"],
            "domain_tokens": o["domain_tokens"],
            "lr": o["lr"],
            "finetune_lr": o["finetune_lr"],
            "context_size": o["context_size"],
            "name_prefix": o["name_prefix"],
            "precision": o["precision"],
        }
        try:
            training_plan(params)
        except JobInputError as exc:
            raise CommandError(str(exc)) from exc
        job = job_create(kind=JobKind.TRAIN_SAES, params=params, enqueue=o["queue"])
        self.stdout.write(f"Job {job.pk}: {'queued' if o['queue'] else 'running here'}")
        job = follow_job(job=job, inline=not o["queue"])
        for sae in SAE.objects.filter(job=job):
            stats = sae.stats.get("eval") or {}
            fvu, l0 = stats.get("fvu"), stats.get("l0")
            figures = f"eval fvu {fvu:.3f} · L0 {l0:.1f}" if fvu is not None and l0 is not None else ""
            self.stdout.write(f"  SAE {sae.pk} {sae.name} [{sae.status}] {figures}")
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
