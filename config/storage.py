"""Local directories the embedded default needs, and the shared artifact storage."""

from __future__ import annotations

from django.conf import settings
from django.core.files.storage import Storage, storages


def artifact_storage() -> Storage:
    """Where SAE weights, activation caches, dashboards and plots live (shared by all workers)."""
    return storages["artifacts"]


def ensure_local_dirs() -> None:
    for path in (settings.VAR_DIR, settings.WORKER_SCRATCH_DIR, settings.STATIC_ROOT):
        path.mkdir(parents=True, exist_ok=True)
