"""Job services run in-process here (no worker): claim, progress, failure, cancel and retry rules."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from compute import jobs
from compute.jobs import JobContext, job_cancel, job_claim, job_create, job_retry, job_run
from compute.models import Job, JobKind, JobStatus

pytestmark = pytest.mark.django_db


def test_job_is_queued_on_commit_not_before(django_capture_on_commit_callbacks, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(jobs, "job_enqueue", lambda *, job_id: sent.append(job_id))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = job_create(kind=JobKind.SELFCHECK)
    assert sent == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [job.pk]
    assert job.queue == "default"


def test_gpu_kinds_go_to_gpu_queue():
    job = job_create(kind=JobKind.TRAIN_SAES, enqueue=False)
    assert job.queue == "gpu"


def test_claim_happens_once():
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    assert job_claim(job_id=job.pk, attempt=1) is not None
    assert job_claim(job_id=job.pk, attempt=1) is None
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_run_records_success_and_a_second_delivery_is_skipped():
    job = job_create(kind=JobKind.SELFCHECK, params={"steps": 2, "delay_s": 0}, enqueue=False)
    assert job_run(job_id=job.pk, attempt=1) == JobStatus.SUCCEEDED
    assert job_run(job_id=job.pk, attempt=1) == "skipped"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.progress == 1.0 and job.finished_at is not None


def test_failure_records_error():
    job = job_create(kind=JobKind.SELFCHECK, params={"steps": 4, "delay_s": 0, "fail": True}, enqueue=False)
    assert job_run(job_id=job.pk, attempt=1) == JobStatus.FAILED
    job.refresh_from_db()
    assert "self-check failure requested" in job.error
    assert job.status == JobStatus.FAILED
    assert 0 < job.progress < 1


def test_bad_input_fails_with_plain_message():
    job = job_create(kind=JobKind.SELFCHECK, params={"steps": 0}, enqueue=False)
    job_run(job_id=job.pk, attempt=1)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "steps must be at least 1 and delay_s not negative."


def test_cancel_stops_a_running_handler_at_its_next_report():
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    claimed = job_claim(job_id=job.pk, attempt=1)
    ctx = JobContext(claimed)
    ctx.progress(0.5, "half")
    assert job_cancel(job_id=job.pk)
    with pytest.raises(jobs.JobCancelled):
        ctx.progress(0.6, "more")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.progress == 0.5


def test_retry_only_when_failed_cancelled_or_lost(django_capture_on_commit_callbacks, settings):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    assert not job_retry(job_id=job.pk)  # queued
    job_claim(job_id=job.pk, attempt=1)
    assert not job_retry(job_id=job.pk)  # running, fresh heartbeat
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_LOST_AFTER_S + 5))
    with django_capture_on_commit_callbacks(execute=False):
        assert job_retry(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.attempt == 2
    # The old attempt's message, if it is ever redelivered, claims nothing.
    assert job_claim(job_id=job.pk, attempt=1) is None
    assert job_claim(job_id=job.pk, attempt=2) is not None


def test_job_page_polls_until_finished(admin_client):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    page = admin_client.get(f"/compute/jobs/{job.pk}/").content.decode()
    assert 'hx-trigger="every 1s"' in page and "Cancel" in page
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="boom: fix the thing")
    partial = admin_client.get(f"/compute/jobs/{job.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial
    assert "every 1s" not in partial and "boom: fix the thing" in partial and "Retry" in partial


def test_cancel_and_retry_buttons_work_without_javascript(admin_client):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    response = admin_client.post(f"/compute/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    response = admin_client.post(f"/compute/jobs/{job.pk}/cancel/", follow=True)
    assert b"only queued or running jobs can be cancelled" in response.content


def _silence(job: Job, seconds: float) -> None:
    """Make the job's last heartbeat `seconds` old, as if its worker had died then."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_a_lost_job_is_taken_over_as_a_new_attempt_and_the_old_attempt_stops(settings):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    old = JobContext(job_claim(job_id=job.pk, attempt=1, worker="w1@a"))
    _silence(job, settings.JOB_LOST_AFTER_S + 1)
    assert Job.objects.get(pk=job.pk).is_lost
    taken = jobs.job_take_over(job_id=job.pk, worker="w2@b", wait_s=0)
    assert taken is not None
    assert (taken.status, taken.attempt, taken.lost_attempts, taken.worker) == (JobStatus.RUNNING, 2, 1, "w2@b")
    assert "Attempt 1 lost its worker w1@a" in taken.message
    assert not taken.is_lost
    # The first attempt, had it only hung, stops at its next report without touching the job.
    with pytest.raises(jobs.JobSuperseded):
        old.progress(0.9, "late")
    assert Job.objects.get(pk=job.pk).progress == 0.0
    # A second delivery finds the new attempt alive and takes nothing.
    assert jobs.job_take_over(job_id=job.pk, worker="w3@c", wait_s=0) is None


def test_a_job_whose_worker_heartbeats_is_never_taken_over(settings):
    settings.JOB_HEARTBEAT_S = 0.1
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    ctx = JobContext(job_claim(job_id=job.pk, attempt=1))
    _silence(job, settings.JOB_LOST_AFTER_S - 1)  # silent, but not yet for long enough
    ctx.beat()
    assert jobs.job_take_over(job_id=job.pk, wait_s=0.3) is None
    after = Job.objects.get(pk=job.pk)
    assert (after.attempt, after.lost_attempts, after.status) == (1, 0, JobStatus.RUNNING)


def test_a_delivery_waits_for_a_just_died_worker_to_become_lost(settings):
    settings.JOB_HEARTBEAT_S = 0.1
    settings.JOB_LOST_AFTER_S = 0.5
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    job_claim(job_id=job.pk, attempt=1)
    started = time.monotonic()
    taken = jobs.job_take_over(job_id=job.pk)
    assert taken is not None and taken.attempt == 2
    assert 0.4 < time.monotonic() - started < 10  # it waited for the heartbeat to age, not for ever


def test_the_last_allowed_lost_attempt_fails_the_job_and_its_unfinished_saes(settings):
    from compute.models import SAE, LanguageModel

    settings.JOB_MAX_LOST_ATTEMPTS = 2
    job = job_create(kind=JobKind.TRAIN_SAES, enqueue=False)
    lm = LanguageModel.objects.create(name="tiny", source="local", location="/models/tiny")
    training = SAE.objects.create(
        name="t", method="gsae", status="training", language_model=lm, d_in=16, d_sae=32, job=job
    )
    job_claim(job_id=job.pk, attempt=1)
    _silence(job, settings.JOB_LOST_AFTER_S + 1)
    assert jobs.job_take_over(job_id=job.pk, wait_s=0).attempt == 2
    _silence(job, settings.JOB_LOST_AFTER_S + 1)
    assert jobs.job_take_over(job_id=job.pk, wait_s=0) is None
    failed = Job.objects.get(pk=job.pk)
    assert failed.status == JobStatus.FAILED and failed.lost_attempts == 2
    assert "worker was lost 2 times" in failed.error and "JOB_MAX_LOST_ATTEMPTS=2" in failed.error
    training.refresh_from_db()
    assert training.status == SAE.Status.FAILED and "lost" in training.stats["failure"]
    assert failed.can_retry


def test_a_stopping_worker_hands_its_job_back_to_the_queue(django_capture_on_commit_callbacks, monkeypatch):
    def stops(ctx: JobContext) -> dict:
        ctx.progress(0.2, "working")
        Job.objects.filter(pk=ctx.job.pk).update(stop_requested=True)  # what the worker's main process writes
        ctx.beat()
        ctx.progress(0.3, "more")  # a handler without checkpoints stops at its next report
        raise AssertionError("not reached")

    monkeypatch.setattr(jobs, "import_string", lambda path: stops)
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert job_run(job_id=job.pk, attempt=1) == "requeued"
    back = Job.objects.get(pk=job.pk)
    assert (back.status, back.attempt, back.lost_attempts, back.stop_requested) == (JobStatus.QUEUED, 2, 0, False)
    assert "Handed back" in back.message and back.progress == 0.3
    assert len(callbacks) == 1  # the new attempt's message, sent once the hand-back commits


def test_worker_stop_request_reaches_only_that_workers_jobs():
    mine = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    other = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    job_claim(job_id=mine.pk, attempt=1, worker="w1@host")
    job_claim(job_id=other.pk, attempt=1, worker="w2@host")
    assert jobs.jobs_request_stop(worker="w1@host") == 1
    ctx_mine, ctx_other = JobContext(Job.objects.get(pk=mine.pk)), JobContext(Job.objects.get(pk=other.pk))
    ctx_mine.beat()
    ctx_other.beat()
    assert ctx_mine.stop_requested and not ctx_other.stop_requested


def test_scratch_of_dead_attempts_is_removed_and_live_ones_kept(artifacts, settings):
    from compute.services.registry import job_scratch, scratch_clean

    running = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    job_claim(job_id=running.pk, attempt=1)
    finished = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    Job.objects.filter(pk=finished.pk).update(status=JobStatus.SUCCEEDED)
    starting = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    job_claim(job_id=starting.pk, attempt=1)
    live = job_scratch(prefix=f"train-{running.pk}-")
    dead = [job_scratch(prefix=f"dash-{finished.pk}-"), job_scratch(prefix=f"eval-{starting.pk}-")]
    keep = settings.WORKER_SCRATCH_DIR / "corpora"
    keep.mkdir()
    removed = scratch_clean(job_id=starting.pk)
    assert sorted(removed) == sorted(dead)
    assert live.is_dir() and keep.is_dir() and not any(p.exists() for p in dead)


def test_job_page_and_api_say_when_a_job_is_lost(admin_client, settings):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    job_claim(job_id=job.pk, attempt=1, worker="w1@a")
    data = admin_client.get(f"/api/compute/jobs/{job.pk}/").json()
    assert data["is_lost"] is False and 0 <= data["silent_s"] < 5 and data["lost_attempts"] == 0
    _silence(job, settings.JOB_LOST_AFTER_S + 7)
    data = admin_client.get(f"/api/compute/jobs/{job.pk}/").json()
    assert data["is_lost"] is True and data["silent_s"] >= settings.JOB_LOST_AFTER_S + 7
    page = admin_client.get(f"/compute/jobs/{job.pk}/").content.decode()
    assert "Lost: no heartbeat from its worker for" in page and "Retry" in page


def _lock_the_database_then_fail(ctx: JobContext) -> dict:
    """A handler that reports while another process holds SQLite's write lock, then fails with its own error
    while the lock is still held (the lock is released a moment later)."""
    import sqlite3
    import threading

    from django.db import connection

    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=5)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        release.wait(10)
        other.rollback()
        other.close()

    threading.Thread(target=hold, daemon=True).start()
    taken.wait(10)
    ctx.progress(0.5, "half way")  # cannot be written: skipped, never raised
    threading.Timer(1.0, release.set).start()
    raise RuntimeError("the handler's own error")


@pytest.mark.django_db(transaction=True)
def test_a_busy_sqlite_database_never_replaces_a_jobs_own_error(monkeypatch, settings, caplog):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's whole-database write lock; PostgreSQL locks rows and has no such failure")
    monkeypatch.setitem(
        jobs.JOB_KINDS, "lock_test", jobs.KindSpec(f"{__name__}._lock_the_database_then_fail", jobs.DEFAULT_QUEUE)
    )
    connection.close()
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.2)  # busy for longer than this
    job = job_create(kind="lock_test", enqueue=False)
    assert job_run(job_id=job.pk, attempt=1) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "the handler's own error" in job.error and "locked" not in job.error
    assert "progress not recorded" in caplog.text  # the report met the lock and was skipped
    assert "outcome not recorded yet" in caplog.text  # the outcome met it too, and waited
    connection.close()
