"""Celery tasks: thin wrappers that take ids and call compute.jobs."""

from __future__ import annotations

from celery import shared_task

from compute.jobs import job_run


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="compute.run_job")
def run_job(self, job_id: int, attempt: int = 1) -> str:
    return job_run(job_id=job_id, attempt=attempt, worker=self.request.hostname)
