"""The Job: our own record of every long-running task (the Celery result backend is not used)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobKind(models.TextChoices):
    """Each kind maps to a handler and a queue in compute.jobs.JOB_KINDS."""

    SELFCHECK = "selfcheck", "Worker self-check"
    TRAIN_SAES = "train_saes", "Train SAEs"
    EVALUATE_SAE = "evaluate_sae", "Evaluate SAE"
    BUILD_DASHBOARDS = "build_dashboards", "Build feature dashboards"
    EVALUATE_STUDY = "evaluate_study", "Evaluate study"
    PROPOSE_DECOMPOSITION = "propose_decomposition", "Propose a feature decomposition"
    MEASURE_DECOMPOSITIONS = "measure_decompositions", "Measure feature decompositions"
    AUTOINTERP = "autointerp", "Explain and score features"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    kind = models.CharField(max_length=40, choices=JobKind.choices)
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    stats = models.JSONField(default=dict, blank=True, help_text="Live figures (loss, tokens done, ...).")
    error = models.TextField(blank=True)
    queue = models.CharField(max_length=40, default="default")
    celery_task_id = models.CharField(max_length=64, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    worker = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=40, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    lost_attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts whose worker stopped heartbeating and were taken over."
    )
    stop_requested = models.BooleanField(
        default=False, help_text="Its worker is shutting down: checkpoint and hand the job back to the queue."
    )
    requeued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a worker last sent a message to take this lost job over."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__gte=0.0, progress__lte=1.0), name="job_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.kind_label}, {self.status})"

    @property
    def kind_label(self) -> str:
        """The kind in words, also for kinds other apps register (`compute.jobs.job_kind_register`)."""
        from compute.jobs import JOB_KINDS

        if self.kind in JobKind.values:
            return self.get_kind_display()
        spec = JOB_KINDS.get(self.kind)
        return spec.label if spec is not None and spec.label else self.kind.replace("_", " ")

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def silent_s(self) -> float | None:
        """Seconds since its worker last heartbeated (None unless running)."""
        if self.status != JobStatus.RUNNING:
            return None
        last = self.heartbeat_at or self.started_at or self.created_at
        return (timezone.now() - last).total_seconds()

    @property
    def is_lost(self) -> bool:
        """Running, but its worker has not heartbeated for JOB_LOST_AFTER_S: it died or hangs."""
        silent = self.silent_s
        return silent is not None and silent > settings.JOB_LOST_AFTER_S

    @property
    def can_cancel(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.CANCELLED) or self.is_lost
