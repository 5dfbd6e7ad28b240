"""Local directories the embedded default needs, and the shared artifact storage: which backend (a short name
from ARTIFACT_STORAGE_BACKEND), and the start-up check that it takes writes."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages

FILESYSTEM = "django.core.files.storage.FileSystemStorage"
S3 = "storages.backends.s3.S3Storage"
ARTIFACT_BACKENDS = {"filesystem": FILESYSTEM, "s3": S3}
# An artifact read from S3 is downloaded into a temporary file that stays in memory up to this size and
# spills to disk beyond it (django-storages' default, 0, would keep a whole SAE's weights in memory).
S3_SPOOL_MAX_BYTES = 16 * 1024 * 1024
WRITE_CHECK_FOLDER = "write-checks"


def artifact_storage() -> Storage:
    """Where SAE weights, activation caches, dashboards and plots live (shared by all workers)."""
    return storages["artifacts"]


def artifact_replace(key: str, content: File) -> str:
    """Store `content` (streamed: a local file is uploaded in parts) under exactly `key`, replacing what was there."""
    storage = artifact_storage()
    if storage.exists(key):
        storage.delete(key)
    saved = storage.save(key, content)
    if saved != key:
        raise RuntimeError(f"Artifact storage renamed {key} to {saved}.")
    return saved


def artifact_fetch(key: str, target: Path) -> Path:
    """Copy the artifact `key` into the local file `target` (scratch), streamed; returns `target`.

    For a worker that must hand a library a path: it never reads a path another process wrote, only what
    the storage API gives back."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with artifact_storage().open(key, "rb") as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return target


def artifact_storage_entry(backend: str, *, root: Path, s3: dict[str, str], options: dict[str, Any]) -> dict:
    """The STORAGES["artifacts"] entry: `backend` is `filesystem` (under `root`), `s3` (bucket, endpoint, region
    and credentials from `s3`; empty ones are left to boto3) or a dotted storage class; `options` override."""
    path = ARTIFACT_BACKENDS.get(backend, backend)
    if "." not in path:
        raise ImproperlyConfigured(
            f"ARTIFACT_STORAGE_BACKEND={backend!r}: use {' or '.join(ARTIFACT_BACKENDS)}, or a dotted storage class."
        )
    base: dict[str, Any] = {}
    if path.endswith("FileSystemStorage"):
        base = {"location": str(root)}
    elif path == S3:
        if not s3.get("bucket_name") and "bucket_name" not in options:
            raise ImproperlyConfigured("ARTIFACT_STORAGE_BACKEND=s3 needs ARTIFACT_S3_BUCKET (the bucket's name).")
        endpoint = s3.get("endpoint_url") or None
        base = {
            **{key: value or None for key, value in s3.items()},
            # MinIO and other self-hosted stores are addressed by path (http://host:9000/bucket/key).
            "addressing_style": "path" if endpoint else None,
            "max_memory_size": S3_SPOOL_MAX_BYTES,
            # As on a file system: a new upload under a taken name gets a new key (corpus stamps rely on it);
            # artifact_replace deletes first, so code-chosen keys stay exact.
            "file_overwrite": False,
            "default_acl": None,
        }
    return {"BACKEND": path, "OPTIONS": {**base, **options}}


def artifact_storage_where() -> str:
    """The artifact storage in words, for messages: the bucket and endpoint, or the folder."""
    storage = artifact_storage()
    if isinstance(storage, FileSystemStorage):
        return f"folder {storage.location}"
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        endpoint = getattr(storage, "endpoint_url", None) or "AWS S3"
        return f"bucket {bucket!r} at {endpoint}"
    return type(storage).__name__


def artifact_storage_problem() -> str:
    """ "" when the artifact storage takes a small write, gives it back and deletes it; otherwise what is wrong
    and what to fix (a missing bucket, one that refuses writes, an endpoint out of reach)."""
    storage = artifact_storage()
    key = f"{WRITE_CHECK_FOLDER}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.txt"
    payload = b"labelsite artifact storage write check\n"
    try:
        saved = storage.save(key, ContentFile(payload))
        with storage.open(saved, "rb") as handle:
            back = handle.read()
        storage.delete(saved)
    except Exception as exc:  # noqa: BLE001 - every backend raises its own types; all mean the same here
        return f"Artifact storage ({artifact_storage_where()}) is not usable: {_cause(exc)}"
    if back != payload:
        return f"Artifact storage ({artifact_storage_where()}) gave back other bytes than were written."
    return ""


def _cause(exc: Exception) -> str:
    """What went wrong, in words a deployer can act on."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
    if code in ("NoSuchBucket", "404"):
        return "the bucket does not exist. Create it (e.g. `mc mb` on MinIO, `aws s3 mb`) or fix ARTIFACT_S3_BUCKET."
    if code in ("AccessDenied", "AllAccessDisabled", "403"):
        return (
            "the bucket refuses writes (AccessDenied). Give these credentials s3:PutObject, s3:GetObject, "
            "s3:DeleteObject and s3:ListBucket on it, or fix ARTIFACT_S3_ACCESS_KEY_ID/ARTIFACT_S3_SECRET_ACCESS_KEY."
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"the credentials are refused ({code}): fix ARTIFACT_S3_ACCESS_KEY_ID/ARTIFACT_S3_SECRET_ACCESS_KEY."
    if isinstance(exc, OSError) and not code:
        return f"{exc.strerror or exc} ({type(exc).__name__}). Make ARTIFACT_ROOT a folder this user can write."
    return f"{type(exc).__name__}: {exc}"


def ensure_local_dirs() -> None:
    for path in (settings.VAR_DIR, settings.WORKER_SCRATCH_DIR, settings.STATIC_ROOT):
        path.mkdir(parents=True, exist_ok=True)
