from __future__ import annotations

from django.apps import AppConfig


class LabelsiteConfig(AppConfig):
    name = "labelsite"
    verbose_name = "Labelling"

    def ready(self) -> None:
        from labelsite import checks, receivers  # noqa: F401 - registers deploy checks and signal receivers
        from labelsite.celery import ensure_broker_dirs
        from labelsite.storage import ensure_local_dirs

        ensure_local_dirs()
        ensure_broker_dirs()
