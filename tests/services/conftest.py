"""A real Celery worker (celery.contrib.pytest's worker fixture, not eager mode) on the configured broker.

With no environment that broker is the embedded filesystem transport; CI sets CELERY_BROKER_URL to Redis
and DATABASE_URL to PostgreSQL, so the same tests then run on the real services.
"""

from __future__ import annotations

import pytest

from config.celery import app as project_app


@pytest.fixture(scope="session")
def celery_app():  # overrides celery.contrib.pytest's test app: use the project's own
    return project_app


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "solo"


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"queues": ["default", "gpu"], "perform_ping_check": False, "shutdown_timeout": 30.0}


@pytest.fixture
def worker(transactional_db, celery_worker):
    """A worker thread consuming both queues; the database is shared with it (committed data only)."""
    return celery_worker


@pytest.fixture(autouse=True)
def empty_queues(celery_app):
    """Messages left by an earlier run name job ids of a database that no longer exists: drop them."""
    celery_app.control.purge()
