"""Job services: create and enqueue, claim or take over, heartbeat and progress, finish, cancel, retry.

A Celery task only ever carries a job id. The worker claims the Job with a conditional UPDATE
(status QUEUED -> RUNNING for the current attempt), so a redelivered message finds nothing to
claim and does no work twice. While a handler runs, a thread heartbeats every JOB_HEARTBEAT_S; a
job silent for JOB_LOST_AFTER_S is lost, and a message that finds it so (redelivered after its worker
died, or sent by `jobs_requeue_lost`) takes it over as a new attempt, again by conditional UPDATE.
An attempt that was taken over (or cancelled) stops at its next report. A worker that is shutting
down asks its handlers to stop; they checkpoint and the job goes back to the queue. Handlers are
named by dotted path so that importing this module (from the web process) never imports the ML stack.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from compute.models import Job, JobKind, JobStatus
from compute.signals import job_succeeded
from config.errors import ServiceError

log = logging.getLogger(__name__)

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class KindSpec:
    handler: str  # dotted path to `def handler(ctx: JobContext) -> dict | None`
    queue: str
    abandon: str = ""  # dotted path to `def abandon(*, job: Job, reason: str)`: fail what a dead job had started
    label: str = ""  # how pages name a kind another app registers (compute's own kinds: JobKind's labels)


JOB_KINDS: dict[str, KindSpec] = {
    JobKind.SELFCHECK: KindSpec("compute.services.diagnostics.selfcheck", DEFAULT_QUEUE),
    JobKind.TRAIN_SAES: KindSpec(
        "compute.services.training.run_training_job", GPU_QUEUE, abandon="compute.services.registry.sae_abandon_job"
    ),
    JobKind.EVALUATE_SAE: KindSpec("compute.services.evaluation.run_evaluation_job", GPU_QUEUE),
    JobKind.BUILD_DASHBOARDS: KindSpec(
        "compute.services.dashboard_build.run_dashboard_job",
        GPU_QUEUE,
        abandon="compute.services.dashboard_build.dashboards_abandon_job",
    ),
    JobKind.EVALUATE_STUDY: KindSpec("compute.services.studies.run_study_evaluation_job", GPU_QUEUE),
    JobKind.PROPOSE_DECOMPOSITION: KindSpec(
        "compute.services.decomposition.run_propose_job",
        GPU_QUEUE,
        abandon="compute.services.decomposition.decompositions_abandon_job",
    ),
    JobKind.MEASURE_DECOMPOSITIONS: KindSpec(
        "compute.services.decomposition.run_measure_job",
        GPU_QUEUE,
        abandon="compute.services.decomposition.decompositions_abandon_job",
    ),
    JobKind.AUTOINTERP: KindSpec("compute.services.autointerp.run_autointerp_job", GPU_QUEUE),
}


def job_kind_register(kind: str, spec: KindSpec) -> None:
    """Run another app's jobs on this machinery (compute never imports that app; it registers itself)."""
    JOB_KINDS[kind] = spec


class JobCancelled(Exception):
    """Raised inside a handler when an admin cancelled its job."""


class JobInterrupted(Exception):
    """This attempt stops, but the job goes on: a handler must not mark its records failed."""


class JobStopRequested(JobInterrupted):
    """The worker is shutting down: save a checkpoint if there is one to save, then let this propagate."""


class JobSuperseded(JobInterrupted):
    """Another worker took this job over (this attempt was thought lost): stop without touching anything."""


class JobInputError(ServiceError):
    """A handler found its input unusable (before any expensive work); the message says what to fix."""


# The contexts of the jobs running in this process, so a shutting-down worker can ask them to stop.
_RUNNING: set[JobContext] = set()
_RUNNING_LOCK = threading.Lock()
# Set once this process was asked to stop: it starts no further job (the task hands the message back).
_WORKER_STOPPING = threading.Event()


def worker_is_stopping() -> bool:
    return _WORKER_STOPPING.is_set()


def worker_starts() -> None:
    """A worker starting in this process runs jobs again, whatever an earlier worker here was asked."""
    _WORKER_STOPPING.clear()


class JobContext:
    """What a handler gets: its job's params, a way to report progress (which also checks for cancel),
    and whether its worker wants it to stop (`stop_requested`).

    A handler that saves checkpoints sets `handles_stop = True` and checks `stop_requested` itself (then
    checkpoints and raises JobStopRequested); for any other handler `progress` raises it.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.params: dict[str, Any] = job.params
        self.handles_stop = False
        self._stop = threading.Event()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()
        _WORKER_STOPPING.set()

    def progress(self, fraction: float, message: str = "", **stats: Any) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = timezone.now()
        updates: dict[str, Any] = {"progress": fraction, "heartbeat_at": now}
        if message:
            updates["message"] = message[:300]
        if stats:
            updates["stats"] = {**self.job.stats, **stats}
            self.job.stats = updates["stats"]
        try:
            changed = self._mine().update(**updates)
        except OperationalError as exc:
            if connection.in_atomic_block:
                raise
            # A database busy for longer than its timeout (SQLite with many writers): this report is skipped,
            # the next one tries again; the job's own work and its outcome are never failed by it.
            log.warning("job %s: progress not recorded (%s); the next report tries again", self.job.pk, exc)
            changed = True
        if not changed:
            self._raise_gone()
        if self.stop_requested and not self.handles_stop:
            raise JobStopRequested(f"Job {self.job.pk}: its worker is stopping.")

    def set_device(self, device: str) -> None:
        Job.objects.filter(pk=self.job.pk).update(device=device)
        self.job.device = device

    def check_cancelled(self) -> None:
        if not self._mine().exists():
            self._raise_gone()

    def beat(self) -> None:
        """Record that this attempt is alive; notice a stop request written by the worker's main process."""
        if not self._mine().update(heartbeat_at=timezone.now()):
            return  # cancelled or taken over: the handler finds out at its next report
        if Job.objects.filter(pk=self.job.pk, stop_requested=True).exists():
            self.request_stop()

    def _mine(self):
        return Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING, attempt=self.job.attempt)

    def _raise_gone(self) -> None:
        now = Job.objects.filter(pk=self.job.pk).values("status", "attempt").first()
        if now and now["status"] in (JobStatus.RUNNING, JobStatus.QUEUED) and now["attempt"] != self.job.attempt:
            raise JobSuperseded(f"Job {self.job.pk} was taken over by attempt {now['attempt']}.")
        raise JobCancelled(f"Job {self.job.pk} was cancelled.")


class _Heartbeat(threading.Thread):
    """Beats every JOB_HEARTBEAT_S while a handler runs, on its own database connection."""

    def __init__(self, ctx: JobContext) -> None:
        super().__init__(name=f"job-{ctx.job.pk}-heartbeat", daemon=True)
        self.ctx = ctx
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            while not self.finished.wait(settings.JOB_HEARTBEAT_S):
                try:
                    self.ctx.beat()
                except DatabaseError as exc:  # one missed beat is harmless; many make the job look lost
                    log.warning("job %s: heartbeat failed: %s", self.ctx.job.pk, exc)
        finally:
            connection.close()

    def stop(self) -> None:
        self.finished.set()
        self.join(timeout=2 * settings.JOB_HEARTBEAT_S)


def jobs_request_local_stop() -> int:
    """Ask every job running in this process to stop (checkpoint and hand back). Returns how many run here."""
    _WORKER_STOPPING.set()
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for ctx in running:
        ctx.request_stop()
    return len(running)


def jobs_request_stop(*, worker: str) -> int:
    """Ask the jobs a worker (by node name) is running to stop; its pool processes notice at their next beat."""
    return Job.objects.filter(status=JobStatus.RUNNING, worker=worker[:200]).update(stop_requested=True)


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
        stop_requested=False,
    )
    if not claimed:
        return None
    return Job.objects.get(pk=job_id)


def job_take_over(*, job_id: int, worker: str | None = None, wait_s: float | None = None) -> Job | None:
    """Take a running job whose worker is lost over as a new attempt; None when there is nothing to take.

    A job that still heartbeats is watched for up to `wait_s` (by default JOB_LOST_AFTER_S and one beat:
    the time in which a worker that died just before this delivery becomes known lost); one whose worker
    keeps heartbeating is left alone. The takeover is one conditional UPDATE on the attempt and the
    heartbeat seen, so of two deliveries at most one wins. The JOB_MAX_LOST_ATTEMPTS-th lost attempt fails
    the job instead.
    """
    worker = (worker or socket.gethostname())[:200]
    wait_s = settings.JOB_LOST_AFTER_S + settings.JOB_HEARTBEAT_S if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        job = Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).first()
        if job is None:
            return None
        if job.is_lost:
            seen = Job.objects.filter(
                pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt, heartbeat_at=job.heartbeat_at
            )
            lost = job.lost_attempts + 1
            now = timezone.now()
            if lost >= settings.JOB_MAX_LOST_ATTEMPTS:
                reason = (
                    f"Its worker was lost {lost} times (the last one, {job.worker or 'unknown'}, went silent at "
                    f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); giving up after JOB_MAX_LOST_ATTEMPTS="
                    f"{settings.JOB_MAX_LOST_ATTEMPTS}. Look for out-of-memory kills in that worker's logs, then "
                    "retry it."
                )
                if seen.update(
                    status=JobStatus.FAILED, finished_at=now, lost_attempts=lost, error=reason,
                    message=f"Failed: worker lost {lost} times",
                ):  # fmt: skip
                    _abandon(job, reason)
                    return None
                continue
            if seen.update(
                attempt=F("attempt") + 1, lost_attempts=lost, heartbeat_at=now, worker=worker, stop_requested=False,
                requeued_at=None, message=f"Attempt {job.attempt} lost its worker {job.worker}; taken over by {worker}",
            ):  # fmt: skip
                log.warning("job %s: attempt %s lost (worker %s); taken over", job.pk, job.attempt, job.worker)
                return Job.objects.get(pk=job.pk)
            continue  # someone else moved it meanwhile: look again
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.info("job %s: its worker %s is alive; not taken over", job.pk, job.worker)
            return None
        time.sleep(min(settings.JOB_HEARTBEAT_S, 1.0, remaining))


def _abandon(job: Job, reason: str) -> None:
    """Mark what a job that will never finish had started (e.g. SAEs in training) as failed."""
    spec = JOB_KINDS.get(job.kind)
    if spec and spec.abandon:
        import_string(spec.abandon)(job=job, reason=reason)


def _finish(job: Job, status: str, **fields: Any) -> bool:
    """Record the outcome unless the job was cancelled (or retried) meanwhile.

    A busy database is waited for (up to JOB_FINISH_RETRY_S): the outcome, and a failed job's own error, are
    what the job is for, and a lock error must never replace them.
    """
    deadline = time.monotonic() + settings.JOB_FINISH_RETRY_S
    pause = 0.05
    while True:
        try:
            return bool(
                Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
                    status=status, finished_at=timezone.now(), **fields
                )
            )
        except OperationalError as exc:
            if connection.in_atomic_block or time.monotonic() > deadline:
                raise
            log.warning("job %s: outcome not recorded yet (%s); retrying in %.2f s", job.pk, exc, pause)
            time.sleep(pause)
            pause = min(2 * pause, 2.0)


def _hand_back(job: Job) -> bool:
    """A stopping worker returns its job to the queue as a new attempt (which resumes from its checkpoint)."""
    changed = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt).update(
        status=JobStatus.QUEUED,
        attempt=F("attempt") + 1,
        stop_requested=False,
        heartbeat_at=None,
        worker="",
        message="Handed back to the queue by a stopping worker; the next attempt resumes from its checkpoint, if any",
    )
    if changed:
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return bool(changed)


def job_run(*, job_id: int, attempt: int, worker: str | None = None) -> str:
    """Claim (or take over, if its worker was lost) and run one job.

    Returns what happened: 'skipped', 'superseded', 'requeued', or the final status.
    """
    worker = (worker or socket.gethostname())[:200]
    job = job_claim(job_id=job_id, attempt=attempt, worker=worker) or job_take_over(job_id=job_id, worker=worker)
    if job is None:
        log.info("job %s attempt %s: nothing to claim (already taken, finished or cancelled)", job_id, attempt)
        return "skipped"
    from compute.services.registry import scratch_clean

    scratch_clean(job_id=job.pk)  # a dead attempt of this job on this machine left its scratch behind
    handler: Callable[[JobContext], dict | None] = import_string(JOB_KINDS[job.kind].handler)
    ctx = JobContext(job)
    # Inside a transaction (tests, a shell) other connections cannot see the job: progress reports beat.
    heartbeat = None if connection.in_atomic_block else _Heartbeat(ctx)
    with _RUNNING_LOCK:
        _RUNNING.add(ctx)
    if heartbeat:
        heartbeat.start()
    try:
        result = handler(ctx) or {}
    except JobCancelled:
        return JobStatus.CANCELLED
    except JobSuperseded:
        log.warning("job %s attempt %s: taken over by another worker; stopped", job.pk, job.attempt)
        return "superseded"
    except JobStopRequested:
        return "requeued" if _hand_back(job) else JobStatus.CANCELLED
    except JobInputError as exc:
        _finish(job, JobStatus.FAILED, error=str(exc), message="Failed: bad input")
        return JobStatus.FAILED
    except Exception as exc:
        log.exception("job %s failed", job.pk)
        error = f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
        _finish(job, JobStatus.FAILED, error=error[-20000:], message=f"Failed: {type(exc).__name__}: {exc}"[:300])
        return JobStatus.FAILED
    finally:
        if heartbeat:
            heartbeat.stop()
        with _RUNNING_LOCK:
            _RUNNING.discard(ctx)
    if not _finish(job, JobStatus.SUCCEEDED, result=result, progress=1.0, message="Done", stop_requested=False):
        return JobStatus.CANCELLED
    job.refresh_from_db()
    for receiver, outcome in job_succeeded.send_robust(sender=Job, job=job):
        if isinstance(outcome, Exception):
            log.error("job %s: %r failed after success: %r", job.pk, receiver, outcome)
    return JobStatus.SUCCEEDED


def job_cancel(*, job_id: int) -> bool:
    """Cancel a queued or running job; a running handler stops at its next progress report."""
    lost = Job.objects.filter(pk=job_id).first()
    changed = Job.objects.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), message="Cancelled"
    )
    if changed:
        job = Job.objects.get(pk=job_id)
        if lost is not None and lost.is_lost:  # no handler left to clean up after itself
            _abandon(job, "cancelled after its worker was lost")
        if job.celery_task_id:
            from config.celery import app

            app.control.revoke(job.celery_task_id)
    return bool(changed)


def job_retry(*, job_id: int) -> bool:
    """Queue a failed, cancelled or lost job again as a new attempt (old messages then claim nothing)."""
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
            lost_attempts=0,
            stop_requested=False,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk))
    return True


def jobs_requeue_lost(*, queues: list[str]) -> list[int]:
    """Send a takeover message for each lost job of these queues whose own message is gone (its whole
    worker died: the filesystem broker then loses the message, Redis holds it for its visibility timeout).

    At most one message per job per JOB_LOST_AFTER_S, whoever calls this; a duplicate takes nothing over.
    """
    from compute.tasks import run_job

    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.JOB_LOST_AFTER_S)
    sent = []
    lost = Job.objects.filter(status=JobStatus.RUNNING, queue__in=queues, heartbeat_at__lt=cutoff).filter(
        Q(requeued_at__isnull=True) | Q(requeued_at__lt=cutoff)
    )
    for job in lost:
        if Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, attempt=job.attempt, requeued_at=job.requeued_at
        ).update(requeued_at=now):
            run_job.apply_async(args=[job.pk, job.attempt], queue=job.queue)
            sent.append(job.pk)
    return sent
