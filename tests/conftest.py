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
