"""Jobs on a real broker with a real worker: progress is visible while running, errors are recorded,
and a redelivered message does not run the work twice."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings

from compute import jobs
from compute.jobs import KindSpec, job_create
from compute.models import Job, JobKind, JobStatus
from compute.tasks import run_job

pytestmark = pytest.mark.services


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def fresh(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


def test_broker_is_the_configured_one(worker):
    assert project_broker_url() == settings.CELERY_BROKER_URL


def project_broker_url() -> str:
    from config.celery import app

    return app.conf.broker_url


SEEN_MIDWAY = threading.Event()


def halfway_handler(ctx: jobs.JobContext) -> dict:
    """Reports half its progress, then waits until the test has seen it (however busy the machine is)."""
    import os

    ctx.progress(0.5, "step 1 of 2")
    if not SEEN_MIDWAY.wait(120):
        raise RuntimeError("the test never saw the progress report")
    ctx.progress(1.0, "step 2 of 2")
    return {"pid": os.getpid()}


def test_job_runs_in_worker_and_progress_is_visible_while_running(worker, monkeypatch):
    monkeypatch.setitem(jobs.JOB_KINDS, JobKind.SELFCHECK, KindSpec(f"{__name__}.halfway_handler", "default"))
    SEEN_MIDWAY.clear()
    job = job_create(kind=JobKind.SELFCHECK)
    seen_midway = wait_for(lambda: (j := fresh(job)).status == JobStatus.RUNNING and 0 < j.progress < 1 and j)
    SEEN_MIDWAY.set()
    assert seen_midway.message.startswith("step ")
    assert seen_midway.worker  # the worker recorded its node name
    done = wait_for(lambda: (j := fresh(job)).is_finished and j)
    assert done.status == JobStatus.SUCCEEDED
    assert done.progress == 1.0
    assert done.result["pid"] > 0
    assert done.celery_task_id


def test_failing_task_records_its_error(worker):
    job = job_create(
        kind=JobKind.SELFCHECK, params={"steps": 4, "delay_s": 0.01, "fail": True, "fail_message": "GPU on fire"}
    )
    done = wait_for(lambda: (j := fresh(job)).is_finished and j)
    assert done.status == JobStatus.FAILED
    assert "RuntimeError: GPU on fire" in done.error
    assert done.finished_at is not None


def test_gpu_kind_is_consumed_from_gpu_queue(worker, monkeypatch):
    monkeypatch.setitem(jobs.JOB_KINDS, JobKind.TRAIN_SAES, KindSpec("compute.services.diagnostics.selfcheck", "gpu"))
    job = job_create(kind=JobKind.TRAIN_SAES, params={"steps": 2, "delay_s": 0})
    done = wait_for(lambda: (j := fresh(job)).is_finished and j)
    assert done.queue == "gpu" and done.status == JobStatus.SUCCEEDED


RUNS: list[int] = []
RUNS_LOCK = threading.Lock()


def counting_handler(ctx: jobs.JobContext) -> dict:
    """Records each execution; sleeps so that a duplicate delivery overlaps the first run."""
    with RUNS_LOCK:
        RUNS.append(ctx.job.pk)
    for step in range(5):
        time.sleep(0.1)
        ctx.progress((step + 1) / 5)
    return {"runs": len(RUNS)}


def test_redelivered_message_does_not_run_the_work_twice(worker, monkeypatch):
    monkeypatch.setitem(jobs.JOB_KINDS, JobKind.SELFCHECK, KindSpec(f"{__name__}.counting_handler", "default"))
    RUNS.clear()
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    # The same message (same task id, same arguments) delivered twice, as a broker does after a lost ack.
    first = run_job.apply_async(args=[job.pk, 1], queue="default")
    run_job.apply_async(args=[job.pk, 1], queue="default", task_id=first.id)
    done = wait_for(lambda: (j := fresh(job)).is_finished and j)
    assert done.status == JobStatus.SUCCEEDED
    # Give the duplicate time to be consumed, then check the handler ran exactly once.
    time.sleep(1.5)
    assert RUNS == [job.pk]
    assert fresh(job).result == {"runs": 1}


def test_cancel_reaches_a_running_job(worker):
    job = job_create(kind=JobKind.SELFCHECK, params={"steps": 50, "delay_s": 0.1})
    wait_for(lambda: fresh(job).status == JobStatus.RUNNING)
    assert jobs.job_cancel(job_id=job.pk)
    time.sleep(0.5)
    after = fresh(job)
    assert after.status == JobStatus.CANCELLED
    assert after.progress < 1.0
