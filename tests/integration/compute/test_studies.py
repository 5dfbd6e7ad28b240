"""Studies end to end on a tiny model: one click from a training run, one evaluation job for all SAEs,
stored and reused, per-feature measurements readable without torch, the page with its three figures."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse

from compute.jobs import job_run
from compute.models import SAE, Evaluation, FeatureMeasurements, Job, JobKind, JobStatus, Study
from compute.selectors.measurements import feature_measurements
from compute.selectors.studies import evaluation_arrays
from compute.services.evaluation import evaluation_start
from compute.services.studies import StudyError, study_create, study_create_from_job, study_evaluate_start
from tests.integration.compute.test_training_service import base_params, run, setup, tiny_model_dir  # noqa: F401

OPTIONS = {"eval_tokens": 512, "frequency_tokens": 1024, "context_size": 32, "batch_size": 8}


@pytest.fixture
def trained(setup):  # noqa: F811
    job = run(base_params(setup, l1_coefficients=[0.3, 3.0]))
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def evaluate(study: Study) -> Job:
    request = study_evaluate_start(study=study, enqueue=False)
    assert request.job is not None
    job_run(job_id=request.job.pk, attempt=request.job.attempt)
    request.job.refresh_from_db()
    return request.job


def test_study_from_a_run_is_evaluated_once_and_reused(setup, trained, admin_client, client, bob):  # noqa: F811
    response = admin_client.post(reverse("compute:study-from-job", args=[trained.pk]))
    study = Study.objects.get(training_job=trained)
    assert response.status_code == 302 and response["Location"] == reverse("compute:study-detail", args=[study.pk])
    assert study_create_from_job(job=trained) == study  # a second click returns the same study
    study.options = OPTIONS
    study.save()
    saes = {s.hyperparams["run_key"]: s for s in SAE.objects.filter(job=trained)}
    assert study.gsae == saes["gsae-standard-l1=0.3"]
    assert set(study.saes.all()) == {s for k, s in saes.items() if not k.startswith("gsae")}
    assert (study.domain_corpus, study.general_corpus) == (setup["science"], setup["web"])

    job = evaluate(study)
    assert job.status == JobStatus.SUCCEEDED, job.error
    evaluation = study.evaluations.get()
    results = evaluation.results
    rows = {r["sae_id"]: r for r in results["rows"]}
    assert len(rows) == 7  # the GSAE and 2 x 3 domain SAEs
    clean, gsae_loss = results["losses"]["clean"], results["losses"]["gsae"]
    gsae_row = rows[study.gsae.pk]
    for row in rows.values():
        expected = (gsae_loss - row["loss"]) / (gsae_loss - clean)
        assert row["fraction_recovered"] == pytest.approx(expected)
        zero = results["losses"]["zero_ablation"]
        assert row["fraction_vs_zero"] == pytest.approx((zero - row["loss"]) / (zero - clean))
    assert gsae_row["fraction_recovered"] == pytest.approx(0.0, abs=1e-9)
    for key in ("ssae-standard-l1=0.3", "ssae-standard-l1=3"):
        row = rows[saes[key].pk]
        assert row["includes_gsae"] and row["l0"] == pytest.approx(gsae_row["l0"] + row["l0_own"], rel=1e-5)
    assert results["domain"]["resolution"] == pytest.approx(1 / results["domain"]["tokens"])
    assert results["domain"]["excluded_share"] < 0.05 and results["domain"]["excluded_positions"] >= 0

    # Health: a few dozen steps each, so every SAE is undertrained and listed as unwise to compare; the other
    # flags follow the row's own figures.
    for row in rows.values():
        record = SAE.objects.get(pk=row["sae_id"])
        flags = {f["flag"] for f in row["health"]}
        assert record.stats["train"]["steps"] < 1000 and "undertrained" in flags
        assert ("diverged" in flags) == (row["fvu"] >= 1.0)
        assert ("dense" in flags) == (record.stats["train"]["l0"] > 0.1 * record.d_sae)
        assert row["flags"] == ", ".join(f["label"] for f in row["health"])
    assert {item["sae_id"] for item in results["unwise"]} == set(rows)
    assert 0.9 * 992 < results["general"]["tokens"] <= 1024 - 1024 // 32  # BOS and EOS positions do not count

    # Per-feature measurements: what the selector returns is what the arrays hold, and matches the table.
    direct = saes["direct-standard-l1=0.3"]
    arrays = evaluation_arrays(evaluation)[direct.pk]
    assert set(arrays) == {"freq_domain", "freq_general", "max_cos_decoder", "max_cos_encoder"}
    assert int((arrays["freq_domain"] == 0).sum()) == rows[direct.pk]["dead_domain"]
    got = feature_measurements(direct, [0, 3, direct.d_sae])
    assert got[3]["freq_general"] == pytest.approx(float(arrays["freq_general"][3]))
    assert got[0]["max_cos_decoder"] == pytest.approx(float(arrays["max_cos_decoder"][0]))
    assert got[direct.d_sae] == dict.fromkeys(got[0], None)
    gsae_values = feature_measurements(study.gsae, [0])[0]
    assert gsae_values["max_cos_decoder"] is None and gsae_values["freq_domain"] is not None
    assert FeatureMeasurements.objects.filter(evaluation=evaluation).count() == 7
    # Frequencies times tokens are whole firing counts.
    counts = arrays["freq_general"].astype(np.float64) * results["general"]["tokens"]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-2)

    # The page: three figures inline, the table, downloads; the API gives the same numbers.
    page = admin_client.get(reverse("compute:study-detail", args=[study.pk])).content.decode()
    assert page.count("<svg") == 3 and "science" in page and "web" in page
    assert "resolution limit" in page and "random directions" in page and "GSAE-finetune" in page
    assert 'id="study-unwise"' in page and "undertrained" in page and " live" in page
    # The researcher picks the Direct SAE the default does not show: the histograms name it, with its L0.
    directs = [saes["direct-standard-l1=0.3"], saes["direct-standard-l1=3"]]
    picked = next(s for s in directs if f'<option value="{s.pk}" selected>' not in page)
    page = admin_client.get(reverse("compute:study-detail", args=[study.pk]), {"show": picked.pk}).content.decode()
    label = picked.hyperparams["sparsity"]
    assert f"Direct SAE ({label}), L0 {rows[picked.pk]['l0']:.3g}" in page
    assert f'<option value="{picked.pk}" selected>' in page
    for name in ("pareto", "rarity", "novelty"):
        png = admin_client.get(reverse("compute:study-figure", args=[study.pk, evaluation.pk, name, "png"]))
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        svg = admin_client.get(reverse("compute:study-figure", args=[study.pk, evaluation.pk, name, "svg"]))
        assert b"<svg" in svg.content and "attachment" in svg["Content-Disposition"]
    table = admin_client.get(reverse("compute:study-export", args=[study.pk, evaluation.pk, "csv"])).content.decode()
    lines = table.strip().splitlines()
    assert len(lines) == 8 and "fraction_recovered" in lines[0] and "domain_corpus" in lines[0]
    api = admin_client.get(f"/api/compute/studies/{study.pk}/evaluation/?per_feature=1").json()
    assert api["rows"] == results["rows"]
    assert api["per_feature"][str(direct.pk)]["freq_general"][3] == pytest.approx(got[3]["freq_general"])
    client.force_login(bob)
    assert client.get(reverse("compute:study-detail", args=[study.pk])).status_code == 403
    assert client.get(f"/api/compute/studies/{study.pk}/evaluation/").status_code == 403

    # Unchanged inputs: reused, no job. A changed budget: a new job.
    again = study_evaluate_start(study=study, enqueue=False)
    assert again.reused and again.evaluation == evaluation and again.job is None
    study.options = {**OPTIONS, "frequency_tokens": 512}
    study.save()
    changed = study_evaluate_start(study=study, enqueue=False)
    assert not changed.reused and changed.job is not None
    assert study_evaluate_start(study=study, enqueue=False).job == changed.job  # a double click joins it


def test_study_numbers_equal_each_sae_evaluated_alone(setup, trained):  # noqa: F811
    study = study_create_from_job(job=trained, options=OPTIONS)
    assert evaluate(study).status == JobStatus.SUCCEEDED
    rows = {r["sae_id"]: r for r in study.evaluations.get().results["rows"]}
    ssae = SAE.objects.get(job=trained, hyperparams__run_key="ssae-standard-l1=3")
    params = {"sae_id": ssae.pk, "eval_tokens": 512, "frequency_tokens": 0, "context_size": 32, "batch_size": 8}
    job = evaluation_start(params=params)
    job_run(job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    alone = Evaluation.objects.get(pk=job.result["evaluation"]).results
    assert rows[ssae.pk]["loss"] == pytest.approx(alone["loss_recovered"]["patched"], rel=1e-5)
    assert rows[ssae.pk]["fraction_recovered"] == pytest.approx(alone["loss_recovered"]["fraction_vs_gsae"], rel=1e-4)
    assert rows[ssae.pk]["fvu"] == pytest.approx(alone["reconstruction"]["fvu"], rel=1e-4)
    assert rows[ssae.pk]["l0"] == pytest.approx(alone["reconstruction"]["l0"], rel=1e-5)


def test_training_pages_show_curves_results_and_readable_names(setup, trained, admin_client):  # noqa: F811
    from compute.services.registry import sae_artifact_folder, sae_make_way

    ssae = SAE.objects.get(job=trained, hyperparams__run_key="ssae-standard-l1=0.3")
    assert ssae.artifact_path == f"saes/{ssae.pk}-{ssae.name}" and ssae.name.endswith("ssae-standard-l1=0.3")
    assert sae_artifact_folder(SAE(pk=7, name="a b/l1=0.3")) == "saes/7-a-b-l1=0.3"
    curve = ssae.stats["curve"]
    assert curve and curve[-1]["step"] <= ssae.stats["train"]["steps"] and {"fvu", "l0", "loss"} <= set(curve[-1])
    page = admin_client.get(reverse("compute:sae-detail", args=[ssae.pk])).content.decode()
    assert 'id="training-curve"' in page and 'id="sweep-figure"' in page
    assert 'id="undertrained"' in page  # a few dozen steps: the page says so
    job_page = admin_client.get(reverse("compute:job-detail", args=[trained.pk])).content.decode()
    assert 'class="data job-saes"' in job_page and job_page.count("health-undertrained") == 7
    assert 'id="health-flags"' in page and "health-undertrained" in page
    api = admin_client.get(f"/api/compute/saes/{ssae.pk}/").json()
    assert "undertrained" in {f["flag"] for f in api["health"]["flags"]}
    assert "job-result" in job_page and "Create the study of this run" in job_page and 'id="training-curve"' in job_page
    # A failed record gives its name up for a re-run.
    SAE.objects.filter(pk=ssae.pk).update(status=SAE.Status.FAILED)
    assert sae_make_way(name=ssae.name) and not SAE.objects.filter(name=ssae.name).exists()
    assert SAE.objects.get(pk=ssae.pk).name == f"{ssae.name}-failed-{ssae.pk}"
    direct = SAE.objects.filter(job=trained, method="direct").first()
    assert not sae_make_way(name=direct.name)  # a ready SAE keeps its name


def test_study_inputs_are_checked(setup, trained):  # noqa: F811
    saes = {s.method: s for s in SAE.objects.filter(job=trained)}
    with pytest.raises(StudyError, match="not a GSAE"):
        study_create(name="x", gsae=saes["direct"], domain_corpus=setup["science"], general_corpus=setup["web"],
                     saes=[saes["ssae"]])  # fmt: skip
    with pytest.raises(StudyError, match="at least one domain SAE"):
        study_create(name="x", gsae=saes["gsae"], domain_corpus=setup["science"], general_corpus=setup["web"], saes=[])
    with pytest.raises(StudyError, match="budget|eval_tokens"):
        study_create(name="x", gsae=saes["gsae"], domain_corpus=setup["science"], general_corpus=setup["web"],
                     saes=[saes["direct"]], options={"eval_tokens": 0})  # fmt: skip
    study = study_create(name="empty-d", gsae=saes["gsae"], domain_corpus=setup["empty"], general_corpus=setup["web"],
                         saes=[saes["direct"]])  # fmt: skip
    with pytest.raises(StudyError, match="empty"):
        study_evaluate_start(study=study, enqueue=False)
    assert not Job.objects.filter(kind=JobKind.EVALUATE_STUDY).exists()
