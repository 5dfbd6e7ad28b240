"""The Compute page follows a running job's progress by itself, and stops asking once every job is done."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.jobs import job_create
from compute.models import Job, JobKind, JobStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_recent_jobs_refresh_while_a_job_runs(page, login, console_errors, alice):
    job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
    login(alice)
    page.goto("/compute/")
    row = page.locator("#recent-jobs tr", has_text=f"{job.pk}")
    expect(row).to_contain_text("0%")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, progress=0.42, message="half way there")
    expect(row).to_contain_text("42%", timeout=10_000)
    expect(row).to_contain_text("half way there")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, progress=1.0, message="done")
    expect(row).to_contain_text("100%", timeout=10_000)
    # finished: the refreshed block no longer polls
    expect(page.locator("#recent-jobs")).not_to_have_attribute("hx-trigger", "every 3s")
    assert console_errors == []
