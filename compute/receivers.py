"""Deleting a record deletes its files in artifact storage (after the deletion commits), so nothing is left
orphaned there: a corpus's uploaded file, an SAE's folder (weights, checkpoints), per-feature measurement arrays."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from compute.models import SAE, Corpus
from compute.models.studies import FeatureMeasurements
from config.storage import artifact_storage

log = logging.getLogger(__name__)


def artifacts_delete(key: str) -> int:
    """Delete a file, or a folder and everything under it, from artifact storage; returns files removed."""
    key = key.strip("/")
    if not key or key in (".", ".."):
        return 0
    storage = artifact_storage()
    removed = 0
    try:
        if storage.exists(key):
            try:
                folders, files = storage.listdir(key)
            except (NotADirectoryError, FileNotFoundError, OSError):
                folders, files = None, None
            if folders is None:
                storage.delete(key)
                return 1
            for name in files:
                storage.delete(f"{key}/{name}")
                removed += 1
            for name in folders:
                removed += artifacts_delete(f"{key}/{name}")
            storage.delete(key)  # the folder itself (file systems); a no-op on object stores
    except Exception:  # the record is gone either way; leave a trace for the admin
        log.exception("could not delete artifact %s", key)
    return removed


def _after_commit(key: str) -> None:
    if key:
        transaction.on_commit(lambda: artifacts_delete(key))


@receiver(post_delete, sender=Corpus, dispatch_uid="compute.corpus_files")
def corpus_files_delete(sender, instance: Corpus, **kwargs) -> None:
    if instance.upload:
        _after_commit(instance.upload.name)


@receiver(post_delete, sender=SAE, dispatch_uid="compute.sae_files")
def sae_files_delete(sender, instance: SAE, **kwargs) -> None:
    _after_commit(instance.artifact_path)


@receiver(post_delete, sender=FeatureMeasurements, dispatch_uid="compute.measurement_files")
def measurement_files_delete(sender, instance: FeatureMeasurements, **kwargs) -> None:
    _after_commit(instance.path)
