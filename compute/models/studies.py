"""A study: a GSAE, a domain corpus D, a general corpus and the domain SAEs compared against the GSAE.

Its evaluations (one model pass per corpus for all its SAEs) are stored and reused: a new evaluation is
computed only when an input (an SAE's weights, a corpus, a budget) changes, which the fingerprint captures.
Per-feature measurements (firing frequencies, max cosine to the GSAE) are numpy `.npz` artifacts, one per
SAE and evaluation, readable without torch.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from compute.models.registry import SAE, Corpus


class Study(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    gsae = models.ForeignKey(SAE, on_delete=models.PROTECT, related_name="studies_as_gsae")
    domain_corpus = models.ForeignKey(Corpus, on_delete=models.PROTECT, related_name="studies_as_domain")
    general_corpus = models.ForeignKey(Corpus, on_delete=models.PROTECT, related_name="studies_as_general")
    saes = models.ManyToManyField(SAE, related_name="studies", blank=True, help_text="The domain SAEs.")
    options = models.JSONField(
        default=dict, blank=True, help_text="Token budgets: eval_tokens, frequency_tokens, context_size, ..."
    )
    training_job = models.ForeignKey(
        "compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="studies"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name


class StudyEvaluation(models.Model):
    """One evaluation of a whole study; `fingerprint` names its inputs, so equal inputs reuse it."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="evaluations")
    fingerprint = models.CharField(max_length=64, db_index=True)
    inputs = models.JSONField(default=dict, blank=True, help_text="What the fingerprint was computed from.")
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    results = models.JSONField(default=dict, blank=True, help_text="Every number of the study's table and figures.")
    artifact_path = models.CharField(max_length=500, blank=True, help_text="Folder of the per-feature arrays.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.study} evaluation {self.pk}"


class FeatureMeasurements(models.Model):
    """Per-feature arrays of one SAE from one study evaluation (`.npz` in artifact storage).

    Keys: `freq_domain`, `freq_general` ([d_sae] firing frequency on each corpus) and, for domain SAEs,
    `max_cos_decoder`, `max_cos_encoder` ([d_sae] max cosine similarity to the GSAE's directions).
    """

    sae = models.ForeignKey(SAE, on_delete=models.CASCADE, related_name="feature_measurements")
    evaluation = models.ForeignKey(StudyEvaluation, on_delete=models.CASCADE, related_name="measurements")
    domain_corpus = models.ForeignKey(Corpus, on_delete=models.PROTECT, related_name="+")
    general_corpus = models.ForeignKey(Corpus, on_delete=models.PROTECT, related_name="+")
    path = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["sae", "evaluation"], name="measurements_once_per_eval")]

    def __str__(self) -> str:
        return f"{self.sae} measured in {self.evaluation}"
