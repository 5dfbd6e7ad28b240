"""Decomposition probes: a feature's proposed sub-components, their measured activations, and live probes."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Decomposition(models.Model):
    """Sub-components of one feature's description, each with phrases and near-miss controls, and the measurement.

    `components` is `[{"name": str, "phrases": [str, ...], "near_misses": [str, ...]}]`. Editing the components
    clears the measurement and bumps `version`, so a measurement of an older version is never stored.
    """

    class Source(models.TextChoices):
        LLM = "llm", "LLM endpoint"
        LOCAL = "local", "Local instruct model"
        MANUAL = "manual", "Typed by an admin"

    class Status(models.TextChoices):
        PROPOSING = "proposing", "Proposing"
        DRAFT = "draft", "Ready to measure"
        MEASURING = "measuring", "Measuring"
        MEASURED = "measured", "Measured"
        FAILED = "failed", "Failed"

    class Verdict(models.TextChoices):
        CLEANLY = "cleanly", "Decomposes cleanly"
        PARTLY = "partly", "Decomposes partly"
        NOT = "not", "Does not decompose"

    sae = models.ForeignKey("compute.SAE", on_delete=models.CASCADE, related_name="decompositions")
    corpus = models.ForeignKey(
        "compute.Corpus",
        on_delete=models.PROTECT,
        related_name="decompositions",
        help_text="The corpus whose dashboard gives the feature's max activation (the scale of every value).",
    )
    feature_index = models.PositiveIntegerField()
    description = models.TextField(help_text="What the feature is said to mean.")
    source = models.CharField(max_length=10, choices=Source.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT, db_index=True)
    components = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    corpus_max = models.FloatField(null=True, blank=True)
    measurement = models.JSONField(default=dict, blank=True, help_text="Per phrase and control: activations.")
    verdict = models.CharField(max_length=10, choices=Verdict.choices, blank=True, db_index=True)
    share = models.FloatField(null=True, blank=True, help_text="Share of sub-components that activate.")
    llm_call = models.ForeignKey("compute.LLMCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["sae", "feature_index"], name="decomposition_sae_feature")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(share__isnull=True) | models.Q(share__gte=0.0, share__lte=1.0),
                name="decomposition_share_0_1",
            )
        ]

    def __str__(self) -> str:
        return f"Decomposition {self.pk} of feature {self.feature_index} ({self.status})"


class ProbeRequest(models.Model):
    """One live-probe text, answered by a `probe_worker` process that keeps the model and SAE loaded."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    sae = models.ForeignKey("compute.SAE", on_delete=models.CASCADE, related_name="+")
    feature_index = models.PositiveIntegerField()
    text = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "id"], name="proberequest_status_id")]

    def __str__(self) -> str:
        return f"Probe {self.pk} ({self.status})"
