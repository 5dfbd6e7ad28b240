"""The evaluate_sae job on a tiny model: reconstruction, loss recovered, frequencies and novelty are recorded."""

from __future__ import annotations

import pytest

from compute.jobs import JobInputError
from compute.models import SAE, Evaluation, JobStatus
from compute.services.evaluation import evaluation_start
from tests.integration.compute.test_training_service import base_params, run, setup, tiny_model_dir  # noqa: F401


@pytest.fixture
def trained(setup):  # noqa: F811
    job = run(base_params(setup, methods=["gsae", "direct", "ssae"], l1_coefficients=[0.3]))
    assert job.status == JobStatus.SUCCEEDED, job.error
    return {s.method: s for s in SAE.objects.filter(job=job)}


def evaluate(sae, setup, **extra):  # noqa: F811
    params = {"sae_id": sae.pk, "general_corpus_id": setup["web"].pk, "eval_tokens": 512, "frequency_tokens": 512,
              "context_size": 32, "batch_size": 8, **extra}  # fmt: skip
    job = evaluation_start(params=params)
    from compute.jobs import job_run

    job_run(job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    return job


def test_ssae_is_evaluated_added_to_its_gsae(setup, trained):  # noqa: F811
    job = evaluate(trained["ssae"], setup)
    assert job.status == JobStatus.SUCCEEDED, job.error
    evaluation = Evaluation.objects.get(pk=job.result["evaluation"])
    results = evaluation.results
    assert evaluation.corpus == setup["science"]  # defaults to the SAE's training corpus
    assert results["stack"] == [trained["gsae"].d_sae, trained["ssae"].d_sae]
    recovered = results["loss_recovered"]
    assert recovered["tokens"] > 0 and recovered["gsae"] is not None
    assert recovered["fraction_vs_zero"] == pytest.approx(
        (recovered["zero_ablation"] - recovered["patched"]) / (recovered["zero_ablation"] - recovered["clean"])
    )
    frequencies = results["frequencies"]
    assert frequencies["corpus"] == "web" and sum(frequencies["log10_histogram"]["counts"]) == trained["ssae"].d_sae
    assert sum(results["novelty"]["decoder"]["histogram"]["counts"]) == trained["ssae"].d_sae
    assert -1.0 <= results["novelty"]["encoder"]["mean"] <= 1.0


def test_gsae_alone_has_no_novelty_and_bad_input_is_refused(setup, trained):  # noqa: F811
    job = evaluate(trained["gsae"], setup, corpus_id=setup["web"].pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    results = Evaluation.objects.get(pk=job.result["evaluation"]).results
    assert "novelty" not in results and results["stack"] == [trained["gsae"].d_sae]
    SAE.objects.filter(pk=trained["direct"].pk).update(status=SAE.Status.FAILED)
    with pytest.raises(JobInputError, match="only ready SAEs"):
        evaluation_start(params={"sae_id": trained["direct"].pk})
    with pytest.raises(JobInputError, match="empty"):
        evaluation_start(params={"sae_id": trained["gsae"].pk, "corpus_id": setup["empty"].pk})
