"""Automated interpretability records: a feature's held-out scoring material, its explanations, their scores.

One `AutoInterpFeature` per (dashboard set, feature): the material is built once and stored, so every
explanation of that feature (automated, or a human's from a campaign) is scored on identical prompts.
"""

from __future__ import annotations

from django.db import models


class AutoInterpFeature(models.Model):
    """One feature on one corpus, with the contexts its explanations are written from and scored on."""

    dashboard_set = models.ForeignKey(
        "compute.DashboardSet", on_delete=models.CASCADE, related_name="autointerp_features"
    )
    feature_index = models.PositiveIntegerField()
    config = models.JSONField(default=dict, help_text="compute.ml.autointerp.AutoInterpConfig used.")
    explain_contexts = models.JSONField(default=list, help_text="What the explainer is shown (contexts, logits).")
    material = models.JSONField(default=dict, help_text="Detection and fuzzing samples, in prompt order.")
    n_test = models.PositiveIntegerField(default=0, help_text="Held-out activating contexts (as many negatives).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dashboard_set", "feature_index"]
        constraints = [
            models.UniqueConstraint(fields=["dashboard_set", "feature_index"], name="autointerpfeature_once")
        ]

    def __str__(self) -> str:
        return f"Autointerp of feature {self.feature_index} (set {self.dashboard_set_id})"


class Explanation(models.Model):
    """An explanation of a feature, automated (with its prompt and raw answer) or a human's."""

    class Source(models.TextChoices):
        AUTO = "auto", "Automated"
        HUMAN = "human", "Human"

    feature = models.ForeignKey(AutoInterpFeature, on_delete=models.CASCADE, related_name="explanations")
    source = models.CharField(max_length=8, choices=Source.choices)
    ref = models.CharField(
        max_length=200, help_text="Who wrote it: 'model:<name>', or 'campaign:<id>/judgment:<id>/<panel>'."
    )
    text = models.TextField()
    model = models.CharField(max_length=200, blank=True)
    prompt = models.JSONField(default=list, blank=True, help_text="Chat messages sent to the explainer.")
    params = models.JSONField(default=dict, blank=True, help_text="Sampling settings.")
    raw = models.JSONField(default=dict, blank=True, help_text="The endpoint's raw answer.")
    refused = models.JSONField(default=list, blank=True, help_text="Earlier answers refused as non-explanations.")
    human_score = models.SmallIntegerField(null=True, blank=True, help_text="The labeller's specificity score.")
    campaign_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["feature", "source", "id"]
        constraints = [models.UniqueConstraint(fields=["feature", "source", "ref"], name="explanation_once_per_ref")]

    def __str__(self) -> str:
        return f"{self.get_source_display()} explanation of {self.feature_id}: {self.text[:40]}"


class ExplanationScore(models.Model):
    """Detection or fuzzing score (balanced accuracy) of one explanation on its feature's material."""

    class Method(models.TextChoices):
        DETECTION = "detection", "Detection"
        FUZZING = "fuzzing", "Fuzzing"

    explanation = models.ForeignKey(Explanation, on_delete=models.CASCADE, related_name="scores")
    method = models.CharField(max_length=10, choices=Method.choices)
    balanced_accuracy = models.FloatField()
    n = models.PositiveIntegerField()
    n_invalid = models.PositiveIntegerField(default=0, help_text="Samples without a valid answer (counted wrong).")
    tp = models.PositiveIntegerField(default=0)
    tn = models.PositiveIntegerField(default=0)
    fp = models.PositiveIntegerField(default=0)
    fn = models.PositiveIntegerField(default=0)
    predictions = models.JSONField(default=list, blank=True)
    answers = models.JSONField(default=list, blank=True, help_text="Raw scorer answer per prompt.")
    model = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["explanation", "method"]
        constraints = [
            models.UniqueConstraint(fields=["explanation", "method"], name="explanationscore_once"),
            models.CheckConstraint(
                condition=models.Q(balanced_accuracy__gte=0.0, balanced_accuracy__lte=1.0),
                name="explanationscore_in_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.balanced_accuracy:.2f} of {self.explanation_id}"
