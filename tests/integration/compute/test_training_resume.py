"""A training job stopped by its worker (a deploy) checkpoints, goes back to the queue, and its next attempt
resumes from the checkpoint: the saved SAEs equal those of an uninterrupted run (same seed, CPU), nothing is
left half-registered, and the checkpoints are removed once the job succeeds."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from compute import jobs
from compute.jobs import job_create, job_run
from compute.models import SAE, Job, JobKind, JobStatus
from compute.services import registry
from config.storage import artifact_storage
from tests.factories import tiny_model_folder

TEXT = "Sample {i}: the radio emission of planet {p} varies with the thermal conductivity of its surface layer."


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return tiny_model_folder(tmp_path_factory.mktemp("tiny-model"), seed=11)


@pytest.fixture
def params(db, tiny_model_dir, tmp_path, artifacts, settings):
    settings.TRAIN_CHECKPOINT_EVERY_TOKENS = 400
    (tmp_path / "web.txt").write_text("\n\n".join(TEXT.format(i=i, p=i % 5) for i in range(200)), encoding="utf-8")
    (tmp_path / "sci.txt").write_text("\n\n".join(TEXT.format(i=i, p=i % 3) for i in range(200)), encoding="utf-8")
    model = registry.language_model_register(name="tiny", source="local", location=str(tiny_model_dir))
    web = registry.corpus_register(name="web", kind="general", source="files", location=str(tmp_path / "web.txt"))
    sci = registry.corpus_register(name="sci", kind="domain", source="files", location=str(tmp_path / "sci.txt"))
    return {
        "language_model_id": model.pk, "hook_name": "blocks.0.hook_resid_post", "general_corpus_id": web.pk,
        "domain_corpus_id": sci.pk, "methods": ["gsae", "direct", "ssae"], "gsae_expansion": 2,
        "domain_expansion": 2, "l1_coefficients": [1.0], "lr": 1e-2, "gsae_tokens": 1000, "domain_tokens": 1000,
        "eval_tokens": 0, "context_size": 32, "batch_size": 4, "minibatch_tokens": 64,
    }  # fmt: skip


def weights(job: Job) -> dict[str, dict[str, torch.Tensor]]:
    storage = artifact_storage()
    return {
        sae.hyperparams["run_key"]: load_file(storage.path(f"{sae.artifact_path}/sae_weights.safetensors"))
        for sae in SAE.objects.filter(job=job)
    }


def stop_when(predicate) -> threading.Thread:
    """Ask the running job to stop (as a worker's SIGTERM does) once `predicate(job stats)` holds."""

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with jobs._RUNNING_LOCK:
                running = list(jobs._RUNNING)
            if any(predicate(ctx.job.stats) for ctx in running):
                jobs.jobs_request_local_stop()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_stopped_training_job_resumes_from_its_checkpoint_to_the_same_saes(
    params, django_capture_on_commit_callbacks
):
    reference = job_create(kind=JobKind.TRAIN_SAES, params={**params, "name_prefix": "ref"}, enqueue=False)
    assert job_run(job_id=reference.pk, attempt=1) == JobStatus.SUCCEEDED, Job.objects.get(pk=reference.pk).error

    job = job_create(kind=JobKind.TRAIN_SAES, params={**params, "name_prefix": "cut"}, enqueue=False)
    # Stopped in the domain phase, after its first checkpoint: the GSAE is done, the domain SAEs half trained.
    watcher = stop_when(lambda stats: bool(stats.get("checkpoint_domain")))
    with django_capture_on_commit_callbacks(execute=False) as handed_back:
        assert job_run(job_id=job.pk, attempt=1) == "requeued"
    watcher.join()
    jobs._WORKER_STOPPING.clear()  # this process plays the next worker
    back = Job.objects.get(pk=job.pk)
    assert back.status == JobStatus.QUEUED and back.attempt == 2 and len(handed_back) == 1
    checkpoint = back.stats["checkpoint_domain"]
    assert artifact_storage().exists(checkpoint)
    saes = {s.hyperparams["run_key"]: s for s in SAE.objects.filter(job=job)}
    assert saes["gsae-standard-l1=1"].status == SAE.Status.READY
    assert {saes[k].status for k in saes if not k.startswith("gsae")} == {SAE.Status.TRAINING}  # none failed
    cut_at = back.stats["checkpoint_tokens"]
    assert 1000 < cut_at < 2000

    assert job_run(job_id=job.pk, attempt=2) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error
    done = Job.objects.get(pk=job.pk)
    assert done.result["resumed_from_tokens"] == cut_at  # fewer tokens trained again than by a restart
    assert SAE.objects.filter(job=job).count() == 3
    assert set(SAE.objects.filter(job=job).values_list("status", flat=True)) == {SAE.Status.READY}
    assert not artifact_storage().exists(checkpoint)
    expected, got = weights(reference), weights(done)
    assert set(expected) == set(got) == {"gsae-standard-l1=1", "direct-standard-l1=1", "ssae-standard-l1=1"}
    for key, tensors in expected.items():
        for name, tensor in tensors.items():
            assert torch.equal(tensor, got[key][name]), (key, name)
