"""Deployment files: docker-compose.yml names real entry points, and `check --deploy` is clean in production."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from django.utils.module_loading import import_string

from compute.jobs import JOB_KINDS
from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_of(service: dict) -> list[str]:
    cmd = service["command"]
    if cmd[:2] == ["sh", "-c"]:
        return shlex.split(cmd[2].split("&&")[-1])
    return cmd


def test_compose_has_the_six_services_and_volumes():
    spec = compose()
    assert set(spec["services"]) == {"postgres", "redis", "web", "worker", "worker-gpu", "probe"}
    assert command_of(spec["services"]["probe"])[:3] == ["python", "manage.py", "probe_worker"]
    assert {"pgdata", "artifacts"} <= set(spec["volumes"])
    gpu = spec["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_web_command_names_the_wsgi_application():
    cmd = command_of(compose()["services"]["web"])
    assert cmd[0] == "gunicorn"
    module, _, attr = cmd[1].partition(":")
    app = import_string(f"{module}.{attr}")
    assert callable(app)
    assert "python manage.py migrate" in compose()["services"]["web"]["command"][2]


def test_worker_commands_name_the_celery_app_and_our_queues():
    services = compose()["services"]
    queues_used = {spec.queue for spec in JOB_KINDS.values()}
    consumed: set[str] = set()
    for name in ("worker", "worker-gpu"):
        cmd = command_of(services[name])
        assert cmd[:4] == ["celery", "-A", "config", "worker"]
        app = import_string(cmd[2] + ".celery_app")
        assert app.main == "labelsite"
        consumed |= set(cmd[cmd.index("-Q") + 1].split(","))
    assert queues_used <= consumed, f"no worker consumes {queues_used - consumed}"
    gpu_cmd = command_of(services["worker-gpu"])
    assert gpu_cmd[gpu_cmd.index("--concurrency") + 1] == "1"
    assert gpu_cmd[gpu_cmd.index("--prefetch-multiplier") + 1] == "1"


def test_app_services_point_at_postgres_and_redis():
    env = compose()["x-app"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:" in env["DATABASE_URL"]
    assert env["CELERY_BROKER_URL"].startswith("redis://redis:")


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_with_the_example_production_env(tmp_path):
    env = subprocess_env(drop=("DEBUG",))
    for line in (ROOT / "deploy.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env.update(DATABASE_URL="sqlite:///" + str(tmp_path / "db.sqlite3"), LABELSITE_VAR_DIR=str(tmp_path))
    out = check_deploy(env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_check_deploy_flags_the_development_secret(tmp_path):
    env = subprocess_env(drop=("SECRET_KEY", "DEBUG"), LABELSITE_VAR_DIR=str(tmp_path))
    out = check_deploy(env)
    assert out.returncode != 0
    assert "SECRET_KEY" in out.stdout + out.stderr
