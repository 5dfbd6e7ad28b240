"""Provenance of every LLM call: the exact prompt, the raw answers, the model and its sampling settings."""

from __future__ import annotations

from django.db import models


class LLMCall(models.Model):
    """One `ChatClient.complete` call, successful or not (never holds an API key)."""

    purpose = models.CharField(max_length=60, help_text="What asked, e.g. 'decomposition' or 'explanation'.")
    model = models.CharField(max_length=200)
    messages = models.JSONField(default=list, help_text="The messages sent, schema note included.")
    params = models.JSONField(default=dict, help_text="Sampling settings and endpoint (no credentials).")
    text = models.TextField(blank=True, help_text="The accepted answer's text.")
    raw = models.JSONField(null=True, blank=True, help_text="The accepted answer as the endpoint returned it.")
    data = models.JSONField(null=True, blank=True, help_text="The parsed JSON answer, when a schema was given.")
    attempts = models.JSONField(default=list, blank=True, help_text="Rejected answers before the accepted one.")
    error = models.TextField(blank=True)
    latency_s = models.FloatField(default=0.0)
    job = models.ForeignKey("compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="llm_calls")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "LLM call"

    def __str__(self) -> str:
        return f"LLM call {self.pk} ({self.purpose}, {self.model})"

    @property
    def succeeded(self) -> bool:
        return not self.error
