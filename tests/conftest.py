"""Shared fixtures: named users of each role (alice the admin, bob and carol the labellers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

pytest_plugins = ("celery.contrib.pytest", "tests.llm_server")

PASSWORD = "correct-horse-battery"
ROOT = Path(__file__).resolve().parents[1]


def subprocess_env(*, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment for a child `manage.py`/python process: ours, less what only this process needs."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", *drop)}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def pytest_configure(config) -> None:
    """TEST_CPU_PRECISION=bfloat16 (or float32) runs the suite as on a CPU that has (or lacks) native bfloat16:
    precision "auto" follows the hardware, and no test may pass under one and fail under the other."""
    forced = os.environ.get("TEST_CPU_PRECISION", "")
    if forced not in ("", "bfloat16", "float32"):
        raise pytest.UsageError(f"TEST_CPU_PRECISION={forced!r}: use bfloat16 or float32")
    if forced:
        import torch

        torch.cpu._is_avx512_bf16_supported = lambda: forced == "bfloat16"
        torch.cpu._is_amx_tile_supported = lambda: forced == "bfloat16"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users are created per test; PBKDF2's deliberate slowness would dominate the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    """An admin (staff)."""
    return get_user_model().objects.create_user("alice", "alice@example.org", PASSWORD, is_staff=True)


@pytest.fixture
def bob(db):
    """A labeller."""
    return get_user_model().objects.create_user("bob", "bob@example.org", PASSWORD)


@pytest.fixture
def carol(db):
    """Another labeller."""
    return get_user_model().objects.create_user("carol", "carol@example.org", PASSWORD)


@pytest.fixture
def admin_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def labeller_client(client, bob):
    client.force_login(bob)
    return client


@pytest.fixture
def artifacts(tmp_path, settings) -> Path:
    """Artifact storage and the worker's scratch space in this test's temporary folder."""
    folder = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(folder)}},
    }
    settings.WORKER_SCRATCH_DIR = tmp_path / "scratch"
    return folder


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 HTTP endpoint on loopback (moto's server): boto3 and django-storages talk to it over HTTP."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}


def s3_client(endpoint: str):
    """A plain boto3 client: how tests look into the bucket without the code under test."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, **S3_CREDENTIALS)


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    """The environment that puts a process's artifact storage in `bucket` on `endpoint`."""
    return {
        "ARTIFACT_STORAGE_BACKEND": "s3",
        "ARTIFACT_S3_BUCKET": bucket,
        "ARTIFACT_S3_ENDPOINT_URL": endpoint,
        "ARTIFACT_S3_REGION": S3_CREDENTIALS["region_name"],
        "ARTIFACT_S3_ACCESS_KEY_ID": S3_CREDENTIALS["aws_access_key_id"],
        "ARTIFACT_S3_SECRET_ACCESS_KEY": S3_CREDENTIALS["aws_secret_access_key"],
    }


@pytest.fixture
def s3_artifacts(s3_server, tmp_path, settings) -> str:
    """Artifact storage in a fresh bucket on the loopback S3 server, scratch in this test's folder; the bucket."""
    from config.storage import artifact_storage_entry

    bucket = f"artifacts-{os.urandom(4).hex()}"
    s3_client(s3_server).create_bucket(Bucket=bucket)
    env = s3_env(s3_server, bucket)
    s3 = {
        "bucket_name": bucket,
        "endpoint_url": s3_server,
        "region_name": env["ARTIFACT_S3_REGION"],
        "access_key": env["ARTIFACT_S3_ACCESS_KEY_ID"],
        "secret_key": env["ARTIFACT_S3_SECRET_ACCESS_KEY"],
    }
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": artifact_storage_entry("s3", root=tmp_path / "unused", s3=s3, options={}),
    }
    settings.WORKER_SCRATCH_DIR = tmp_path / "scratch"
    return bucket
