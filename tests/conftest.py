"""Shared fixtures: named users of each role (alice the admin, bob and carol the labellers)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

pytest_plugins = ("celery.contrib.pytest",)

PASSWORD = "correct-horse-battery"


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
