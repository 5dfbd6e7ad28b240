"""Job services: create and enqueue, claim, report progress, finish, cancel, retry.

A Celery task only ever carries a job id. The worker claims the Job with a conditional UPDATE
(status QUEUED -> RUNNING for the current attempt), so a redelivered message finds nothing to
claim and does no work twice. Handlers are named by dotted path so that importing this module
(from the web process) never imports the ML stack.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from compute.models import Job, JobKind, JobStatus
from compute.signals import job_succeeded

log = logging.getLogger(__name__)

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class KindSpec:
    handler: str  # dotted path to `def handler(ctx: JobContext) -> dict | None`
    queue: str


JOB_KINDS: dict[str, KindSpec] = {
    JobKind.SELFCHECK: KindSpec("compute.services.diagnostics.selfcheck", DEFAULT_QUEUE),
    JobKind.TRAIN_SAES: KindSpec("compute.services.training.run_training_job", GPU_QUEUE),
    JobKind.EVALUATE_SAE: KindSpec("compute.services.evaluation.run_evaluation_job", GPU_QUEUE),
    JobKind.BUILD_DASHBOARDS: KindSpec("compute.services.dashboards.run_dashboard_job", GPU_QUEUE),
    JobKind.AUTOINTERP: KindSpec("compute.services.autointerp.run_autointerp_job", GPU_QUEUE),
}


class JobCancelled(Exception):
    """Raised inside a handler when an admin cancelled its job."""


class JobInputError(Exception):
    """A handler found its input unusable (before any expensive work); the message says what to fix."""


def param_int(params: dict[str, Any], key: str, default: int, *, low: int, high: int) -> int:
    """A whole-number job parameter within [low, high] (booleans refused); JobInputError otherwise."""
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise JobInputError(f"{key} must be a whole number from {low} to {high}; got {value!r}.")
    return value


class JobContext:
    """What a handler gets: its job's params, and a way to report progress (which also checks for cancel)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.params: dict[str, Any] = job.params

    def progress(self, fraction: float, message: str = "", **stats: Any) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = timezone.now()
        updates: dict[str, Any] = {"progress": fraction, "heartbeat_at": now}
        if message:
            updates["message"] = message[:300]
        if stats:
            updates["stats"] = {**self.job.stats, **stats}
            self.job.stats = updates["stats"]
        changed = Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING, attempt=self.job.attempt).update(
            **updates
        )
        if not changed:
            raise JobCancelled(f"Job {self.job.pk} was cancelled.")

    def set_device(self, device: str) -> None:
        Job.objects.filter(pk=self.job.pk).update(device=device)
        self.job.device = device

    def check_cancelled(self) -> None:
        if not Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING, attempt=self.job.attempt).exists():
            raise JobCancelled(f"Job {self.job.pk} was cancelled.")


def job_create(*, kind: str, params: dict[str, Any] | None = None, created_by=None, enqueue: bool = True) -> Job:
    """Record a job and queue its task once the surrounding transaction commits."""
    spec = JOB_KINDS[kind]
    job = Job.objects.create(kind=kind, params=params or {}, queue=spec.queue, created_by=created_by)
    if enqueue:
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return job


def job_enqueue(*, job_id: int) -> None:
    from compute.tasks import run_job

    job = Job.objects.get(pk=job_id)
    result = run_job.apply_async(args=[job.pk, job.attempt], queue=job.queue)
    Job.objects.filter(pk=job.pk).update(celery_task_id=result.id)


def job_claim(*, job_id: int, attempt: int, worker: str | None = None) -> Job | None:
    """Atomically move QUEUED -> RUNNING; None when someone else already did (or it was cancelled)."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED, attempt=attempt).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        finished_at=None,
        worker=(worker or socket.gethostname())[:200],
        error="",
    )
    if not claimed:
        return None
    return Job.objects.get(pk=job_id)


def _finish(job: Job, status: str, **fields: Any) -> bool:
    """Record the outcome unless the job was cancelled (or retried) meanwhile."""
    return bool(
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
            status=status, finished_at=timezone.now(), **fields
        )
    )


def job_run(*, job_id: int, attempt: int, worker: str | None = None) -> str:
    """Claim and run one job. Returns what happened: 'skipped', or the final status."""
    job = job_claim(job_id=job_id, attempt=attempt, worker=worker)
    if job is None:
        log.info("job %s attempt %s: nothing to claim (already taken, finished or cancelled)", job_id, attempt)
        return "skipped"
    handler: Callable[[JobContext], dict | None] = import_string(JOB_KINDS[job.kind].handler)
    ctx = JobContext(job)
    try:
        result = handler(ctx) or {}
    except JobCancelled:
        return JobStatus.CANCELLED
    except JobInputError as exc:
        _finish(job, JobStatus.FAILED, error=str(exc), message="Failed: bad input")
        return JobStatus.FAILED
    except Exception as exc:
        log.exception("job %s failed", job.pk)
        error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
        _finish(job, JobStatus.FAILED, error=error[-20000:], message=f"Failed: {type(exc).__name__}: {exc}"[:300])
        return JobStatus.FAILED
    if not _finish(job, JobStatus.SUCCEEDED, result=result, progress=1.0, message="Done"):
        return JobStatus.CANCELLED
    job.refresh_from_db()
    for receiver, outcome in job_succeeded.send_robust(sender=Job, job=job):
        if isinstance(outcome, Exception):
            log.error("job %s: %r failed after success: %r", job.pk, receiver, outcome)
    return JobStatus.SUCCEEDED


def job_cancel(*, job_id: int) -> bool:
    """Cancel a queued or running job; a running handler stops at its next progress report."""
    changed = Job.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled"
    )
    if changed:
        job = Job.objects.get(pk=job_id)
        if job.celery_task_id:
            from config.celery import app

            app.control.revoke(job.celery_task_id)
    return bool(changed)


def job_retry(*, job_id: int) -> bool:
    """Queue a failed, cancelled or stale job again as a new attempt (old messages then claim nothing)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if not job.can_retry:
            return False
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.QUEUED,
            attempt=F("attempt") + 1,
            progress=0.0,
            message="Queued again",
            error="",
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return True
