"""`python manage.py evaluate SAE [--corpus NAME] [--general NAME]`: the evaluate_sae job with a tqdm bar."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from compute.jobs import JobInputError, job_create
from compute.ml.config import EvaluationConfig
from compute.models import SAE, Corpus, Evaluation, JobKind, JobStatus
from compute.services.evaluation import evaluation_plan

from ._follow import follow_job
from ._options import add_config_arguments, config_params
from .train import _pk


class Command(BaseCommand):
    help = "Evaluate an SAE: reconstruction and loss recovered on a corpus, frequencies on general text, novelty."

    def add_arguments(self, parser) -> None:
        parser.add_argument("sae", help="SAE name or id")
        parser.add_argument("--corpus", help="corpus to evaluate on (default: the SAE's training corpus)")
        parser.add_argument("--general", help="general corpus for feature frequencies")
        add_config_arguments(parser, EvaluationConfig)
        parser.add_argument("--queue", action="store_true", help="queue for a Celery worker instead of running here")

    def handle(self, *args, **o) -> None:
        params = {
            "sae_id": _pk(SAE, o["sae"]),
            "corpus_id": _pk(Corpus, o["corpus"]),
            "general_corpus_id": _pk(Corpus, o["general"]),
            **config_params(o, EvaluationConfig),
        }
        try:
            evaluation_plan(params)
        except JobInputError as exc:
            raise CommandError(str(exc)) from exc
        job = job_create(kind=JobKind.EVALUATE_SAE, params=params, enqueue=o["queue"])
        job = follow_job(job=job, inline=not o["queue"])
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Job {job.pk} {job.status}: {job.error or job.message}")
        evaluation = Evaluation.objects.get(pk=job.result["evaluation"])
        self.stdout.write(json.dumps(_without_histograms(evaluation.results), indent=2))


def _without_histograms(value):
    """Every number of the evaluation, less the per-bin histogram counts (those are for figures)."""
    if isinstance(value, dict):
        return {k: _without_histograms(v) for k, v in value.items() if not k.endswith("histogram")}
    return value
