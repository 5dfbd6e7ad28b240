"""The Celery app. Tasks are autodiscovered from installed apps (compute/tasks.py)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("labelsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _make_broker_dirs(**_: object) -> None:
    ensure_broker_dirs()


def ensure_broker_dirs() -> None:
    """The filesystem transport needs its folders to exist before anyone publishes or consumes."""
    from django.conf import settings

    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in options:
            os.makedirs(options[key], exist_ok=True)
