from __future__ import annotations

from django.apps import AppConfig


class LabelsiteConfig(AppConfig):
    name = "labelsite"
    verbose_name = "Labelling"

    def ready(self) -> None:
        from labelsite import receivers  # noqa: F401 - reacts to compute's job_succeeded signal
