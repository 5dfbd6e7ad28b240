"""The job page follows a job live (HTMX polling) and its cancel and retry buttons work."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute import jobs
from compute.jobs import JobContext, job_claim, job_create
from compute.models import Job, JobKind, JobStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_progress_updates_live_then_cancel_and_retry(page, login, alice, monkeypatch):
    # No worker here: record what the retry would send to the broker instead of sending it.
    enqueued: list[int] = []
    monkeypatch.setattr(jobs, "job_enqueue", lambda *, job_id: enqueued.append(job_id))
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    login(alice)
    page.goto(f"/compute/jobs/{job.pk}/")
    expect(page.locator(".job-message")).to_have_text("Waiting for a worker…")

    # A worker claims the job and reports progress; the open page shows it without a reload.
    ctx = JobContext(job_claim(job_id=job.pk, attempt=1))
    ctx.progress(0.42, "tokens 420 of 1000", loss=0.123)
    expect(page.locator(".job-message")).to_have_text("tokens 420 of 1000")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "42")
    expect(page.locator(".job-stats")).to_contain_text("0.123")

    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".status")).to_have_text("Cancelled")
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED

    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".status")).to_have_text("Queued")
    retried = Job.objects.get(pk=job.pk)
    assert retried.status == JobStatus.QUEUED and retried.attempt == 2
    assert enqueued == [job.pk]


def test_failed_job_shows_its_error(page, login, alice):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error="JobInputError: hook blocks.99 not in model")
    login(alice)
    page.goto(f"/compute/jobs/{job.pk}/")
    expect(page.locator("pre.error-text")).to_contain_text("hook blocks.99 not in model")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
