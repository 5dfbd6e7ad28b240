"""A synthetic world registered as a model and two corpora (`manage.py world add`) goes through training, the study
evaluation and its export unchanged; the study adds figures against the true features, and says that its loss
figures are explained variance."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from django.core.management import call_command
from django.urls import reverse

from compute.jobs import job_create, job_run
from compute.ml.synthetic import HOOK_NAME, load_world
from compute.models import SAE, Corpus, Job, JobKind, JobStatus, LanguageModel, Study
from compute.selectors.studies import evaluation_csv, evaluation_export
from compute.services import registry
from compute.services.studies import study_create_from_job, study_evaluate_start
from compute.services.worlds import world_local_folder

WORLD = ["--general-features", "48", "--domain-features", "16", "--hidden-dim", "16", "--seed", "3"]


@pytest.fixture
def world(db, artifacts):
    call_command("world", "add", "toy", *WORLD, "--general-documents", "200", "--domain-documents", "200",
                 "--document-tokens", "32", stdout=io.StringIO())  # fmt: skip
    return LanguageModel.objects.get(name="toy")


def test_world_command_registers_a_model_and_two_corpora_with_the_answer_key(world):
    assert world.source == "synthetic" and world.default_hook == HOOK_NAME
    general, domain = Corpus.objects.get(name="toy-general"), Corpus.objects.get(name="toy-domain")
    assert (general.kind, domain.kind) == ("general", "domain")
    saved = load_world(world_local_folder(language_model=world))
    assert saved.directions.shape == (64, 16)
    assert saved.subsets()["domain"].tolist() == list(range(48, 64))  # which true features are domain features
    # The corpora stream the world's samples: documents of 32 samples, the domain stream on D only.
    docs = list(registry.corpus_texts(corpus=domain))
    assert len(docs) == 200 and docs[1] == "domain 32 64"
    loaded = registry.language_model_load(language_model=world, device="cpu", hook_name=HOOK_NAME)
    tokens = torch.tensor([[0, 1 + 2 * 5 + 1, 1 + 2 * 6]])  # BOS, domain sample 5, general sample 6
    acts = loaded.model.run_with_cache(tokens)[1][HOOK_NAME]
    true = saved.true_features(tokens)
    assert torch.allclose(acts[0, 1], true[0, 1] @ saved.directions, atol=1e-5)  # activation = sum of true features
    assert acts[0, 0].abs().sum() == 0  # BOS is nothing


def test_a_world_refuses_what_would_clash_or_cannot_work(world):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="domain_prob_general must not exceed domain_prob"):
        call_command("world", "add", "bad", "--domain-prob", "0.01", "--domain-prob-general", "0.1")
    registry.language_model_register(name="real", source="hub", location="gpt2")
    with pytest.raises(CommandError, match="not a synthetic world"):
        call_command("world", "add", "real")
    with pytest.raises(registry.RegistryError, match="world add"):
        registry.corpus_register(name="x", kind="general", source="synthetic", location="toy")
    # Rebuilding the world under its name (other samples) changes its corpora's stamp, so studies re-evaluate.
    stamp = registry.corpus_stamp(corpus=Corpus.objects.get(name="toy-domain"))
    call_command("world", "add", "toy", *WORLD[:-1], "4", stdout=io.StringIO())
    assert registry.corpus_stamp(corpus=Corpus.objects.get(name="toy-domain")) != stamp


def test_training_study_and_export_run_on_a_world(world, admin_client):
    general, domain = Corpus.objects.get(name="toy-general"), Corpus.objects.get(name="toy-domain")
    params = {
        "language_model_id": world.pk,
        "general_corpus_id": general.pk,
        "domain_corpus_id": domain.pk,
        "methods": ["gsae", "finetune", "direct", "ssae"],
        "architecture": "topk",
        "ks": [2, 4],
        "gsae_k": 4,
        "gsae_expansion": 4,
        "domain_expansion": 1,
        "gsae_tokens": 3000,
        "domain_tokens": 2000,
        "eval_tokens": 512,
        "context_size": 32,
        "batch_size": 8,
        "minibatch_tokens": 128,
    }
    job = job_create(kind=JobKind.TRAIN_SAES, params=params, enqueue=False)
    job_run(job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert SAE.objects.filter(job=job, status=SAE.Status.READY).count() == 7

    study = study_create_from_job(job=job)
    study.options = {"eval_tokens": 1024, "frequency_tokens": 1024, "context_size": 32, "batch_size": 8}
    study.save()
    request = study_evaluate_start(study=study, enqueue=False)
    job_run(job_id=request.job.pk, attempt=request.job.attempt)
    evaluation_job = Job.objects.get(pk=request.job.pk)
    assert evaluation_job.status == JobStatus.SUCCEEDED, evaluation_job.error
    evaluation = Study.objects.get(pk=study.pk).evaluations.get()
    results = evaluation.results
    assert results["loss_kind"] == "explained_variance"
    assert results["losses"]["clean"] == 0
    rows = {r["sae_id"]: r for r in results["rows"]}
    saved = load_world(world_local_folder(language_model=world))
    for row in rows.values():
        # The loss columns are squared errors: the fraction against "zero ablation" (mean ablation) is 1 - FVU.
        assert row["fraction_vs_zero"] == pytest.approx(1 - row["fvu"], abs=1e-6)
        assert row["loss"] == pytest.approx(row["mse"], rel=1e-6)
        # Against truth, recomputed here by brute force from the decoder and the true directions.
        sae = registry.sae_load(sae=SAE.objects.get(pk=row["sae_id"]), device="cpu", scratch=artifacts_scratch())
        cos = (
            torch.nn.functional.normalize(saved.directions, dim=-1)
            @ torch.nn.functional.normalize(sae.W_dec.detach(), dim=-1).T
        )  # [F, d_sae]
        best = cos.max(dim=1).values
        assert row["recovered_all"] == int((best >= 0.9).sum())
        assert row["recovered_domain"] == int((best[48:] >= 0.9).sum())
        assert 0 <= row["mcc_domain"] <= 1 and 0 <= row["f1_all"] <= 1
    gsae_row = rows[study.gsae.pk]
    missed = results["truth"]["gsae_missed"]
    assert missed == 16 - gsae_row["recovered_domain"]
    assert gsae_row["gsae_missed_recovered"] == 0
    claims = results["truth"]["claims"]
    ssae_rows = [r for r in rows.values() if r["method"] == "ssae"]
    assert len(claims["comparisons"]) == 2 * len(ssae_rows)  # each SSAE against a finetune and a Direct SAE
    for comparison in claims["comparisons"]:
        ssae = next(r for r in ssae_rows if r["name"] == comparison["ssae"])
        other = next(r for r in rows.values() if r["name"] == comparison["other"])
        assert comparison["covers_missed"] == (ssae["gsae_missed_recovered"] > other["gsae_missed_recovered"])
    assert claims["covers_missed"] == all(c["covers_missed"] for c in claims["comparisons"])

    exported = evaluation_export(evaluation)
    assert exported["truth"]["threshold"] == 0.9 and "mcc_domain" in exported["rows"][0]
    table = list(csv.DictReader(io.StringIO(evaluation_csv(evaluation))))
    assert {"mcc_domain", "f1_general", "gsae_missed_recovered"} <= set(table[0])
    assert {r["loss_kind"] for r in table} == {"explained_variance"}

    page = admin_client.get(reverse("compute:study-detail", args=[study.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert "explained variance" in body and "Domain features recovered against L0" in body
    assert f"the GSAE misses {missed} of 16 domain features" in body
    svg = admin_client.get(reverse("compute:study-figure", args=[study.pk, evaluation.pk, "recovery", "svg"]))
    assert svg.status_code == 200 and b"<svg" in svg.content
    json.loads(admin_client.get(reverse("compute:study-export", args=[study.pk, evaluation.pk, "json"])).content)


def artifacts_scratch():
    from django.conf import settings

    return settings.WORKER_SCRATCH_DIR
