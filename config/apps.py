from __future__ import annotations

from django.apps import AppConfig


class ShellConfig(AppConfig):
    """The project shell: settings, Celery, storage, roles, checks and the site-wide templates."""

    name = "config"
    verbose_name = "Project shell"

    def ready(self) -> None:
        from config import checks  # noqa: F401 - registers the deploy checks
        from config.celery import ensure_broker_dirs
        from config.storage import ensure_local_dirs

        ensure_local_dirs()
        ensure_broker_dirs()
