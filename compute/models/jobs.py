"""The Job: our own record of every long-running task (the Celery result backend is not used)."""

from __future__ import annotations

from datetime import timedelta

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

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__gte=0.0, progress__lte=1.0), name="job_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.get_kind_display()}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_stale(self) -> bool:
        """Running, but its worker has not reported for JOB_STALE_AFTER_S: probably died."""
        if self.status != JobStatus.RUNNING:
            return False
        last = self.heartbeat_at or self.started_at or self.created_at
        return timezone.now() - last > timedelta(seconds=settings.JOB_STALE_AFTER_S)

    @property
    def can_cancel(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)

    @property
    def can_retry(self) -> bool:
        return self.status in (JobStatus.FAILED, JobStatus.CANCELLED) or self.is_stale

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
