"""Job services run in-process here (no worker): claim, progress, failure, cancel and retry rules."""

from __future__ import annotations

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


def test_retry_only_when_failed_cancelled_or_stale(django_capture_on_commit_callbacks, settings):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    assert not job_retry(job_id=job.pk)  # queued
    job_claim(job_id=job.pk, attempt=1)
    assert not job_retry(job_id=job.pk)  # running, fresh heartbeat
    Job.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S + 5)
    )
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
