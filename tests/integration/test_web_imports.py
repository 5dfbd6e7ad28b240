"""The web process starts and serves every page without importing the ML stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: migrate a throwaway SQLite database, then open every GET page an admin
# can reach (ids filled with real rows where possible) and report which heavy modules got imported.
SCRIPT = r"""
import json, sys, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.test import Client
import config.wsgi, config.urls, compute.tasks  # what gunicorn and the URL conf load
from compute.jobs import job_create
from compute.models import JobKind
from tests.integration.test_roles import staff_only_paths
job = job_create(kind=JobKind.SELFCHECK, enqueue=False)
admin = get_user_model().objects.create_user("root", "r@example.org", "pw-123456789", is_staff=True, is_superuser=True)
client = Client()
client.force_login(admin)
statuses = {}
for path in ["/", "/healthz", "/accounts/login/"] + staff_only_paths():
    statuses[path] = client.get(path.replace("/1/", f"/{job.pk}/")).status_code
heavy = sorted(m for m in ("torch", "transformer_lens", "sae_lens", "transformers") if m in sys.modules)
print(json.dumps({"heavy": heavy, "statuses": statuses}))
"""


def test_web_process_never_imports_torch(tmp_path):
    env = subprocess_env(
        drop=("DATABASE_URL", "CELERY_BROKER_URL"),
        DJANGO_SETTINGS_MODULE="config.settings",
        LABELSITE_VAR_DIR=str(tmp_path),
    )
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"web process imported {report['heavy']}"
    served = [p for p, code in report["statuses"].items() if code == 200]
    assert "/" in served and "/compute/" in served and "/admin/" in served
    assert not [p for p, code in report["statuses"].items() if code >= 500], report["statuses"]
