"""A whole study on the real SmolLM2-135M-Instruct and the demo corpora, with small budgets: train, create the
study in one click, evaluate it in one job, and see all three figures."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.jobs import job_run
from compute.models import SAE, JobKind, JobStatus
from compute.services.registry import register_defaults
from compute.services.studies import study_evaluate_start
from compute.services.training import training_start

pytestmark = pytest.mark.slow


def test_a_smollm2_study_produces_all_three_figures(admin_client, artifacts, settings):
    model, corpora = register_defaults()
    web, science = (next(c for c in corpora if c.name == name) for name in ("web", "science"))
    params = {
        "language_model_id": model.pk, "general_corpus_id": web.pk, "domain_corpus_id": science.pk,
        "methods": ["gsae", "finetune", "direct", "ssae"], "gsae_expansion": 2, "domain_expansion": 1,
        "l1_coefficients": [0.3, 3.0], "gsae_tokens": 2048, "domain_tokens": 2048, "eval_tokens": 0,
        "context_size": 64, "batch_size": 8, "minibatch_tokens": 256, "name_prefix": "smol",
    }  # fmt: skip
    train = training_start(params=params)
    job_run(job_id=train.pk, attempt=train.attempt)
    train.refresh_from_db()
    assert train.status == JobStatus.SUCCEEDED, train.error
    assert SAE.objects.filter(job=train, status=SAE.Status.READY).count() == 7

    admin_client.post(reverse("compute:study-from-job", args=[train.pk]))
    study = train.studies.get()
    study.options = {"eval_tokens": 512, "frequency_tokens": 1024, "context_size": 64, "batch_size": 8}
    study.save()
    request = study_evaluate_start(study=study, enqueue=False)
    assert request.job.kind == JobKind.EVALUATE_STUDY
    job_run(job_id=request.job.pk, attempt=request.job.attempt)
    request.job.refresh_from_db()
    assert request.job.status == JobStatus.SUCCEEDED, request.job.error

    results = study.evaluations.get().results
    assert len(results["rows"]) == 7
    losses = results["losses"]
    assert losses["clean"] < losses["gsae"] < losses["zero_ablation"]  # a 2x GSAE on 2k tokens is far from clean
    page = admin_client.get(reverse("compute:study-detail", args=[study.pk])).content.decode()
    assert page.count("<svg") == 3
    for name in ("pareto", "rarity", "novelty"):
        assert f'id="figure-{name}"' in page
        png = admin_client.get(
            reverse("compute:study-figure", args=[study.pk, study.evaluations.get().pk, name, "png"])
        )
        assert png.status_code == 200 and len(png.content) > 10_000
