"""Deployment files: docker-compose.yml names real entry points, and `check --deploy` is clean in production."""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from django.utils.module_loading import import_string

from compute.jobs import JOB_KINDS
from tests.conftest import s3_client, subprocess_env

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_of(service: dict) -> list[str]:
    cmd = service["command"]
    if cmd[:2] == ["sh", "-c"]:
        return shlex.split(cmd[2].split("&&")[-1])
    return cmd


def test_compose_has_the_eight_services_and_volumes():
    spec = compose()
    assert set(spec["services"]) == {"postgres", "redis", "minio", "bucket", "web", "worker", "worker-gpu", "probe"}
    assert command_of(spec["services"]["probe"])[:3] == ["python", "manage.py", "probe_worker"]
    assert set(spec["volumes"]) == {"pgdata", "redisdata", "miniodata"}
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


APP_SERVICES = ("web", "worker", "worker-gpu", "probe")


def variables_settings_read() -> set[str]:
    """The environment variables config/settings.py reads: the first argument of every env_* call."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("env_")
        and node.args and isinstance(node.args[0], ast.Constant)
    }  # fmt: skip


def example_env() -> dict[str, str]:
    lines = (ROOT / "deploy.env.example").read_text().splitlines()
    return dict(line.partition("=")[::2] for line in lines if line and not line.startswith("#"))


def test_every_variable_the_app_services_set_is_one_settings_read():
    known = variables_settings_read()
    assert {"DATABASE_URL", "ARTIFACT_STORAGE_BACKEND", "ARTIFACT_S3_BUCKET"} <= known  # the parse found them
    services = compose()["services"]
    for name in APP_SERVICES:
        assert services[name]["env_file"] == "deploy.env"
        unknown = set(services[name]["environment"]) - known
        assert not unknown, f"{name} sets {unknown}, which nothing reads"
    assert not set(example_env()) - known, f"deploy.env.example sets {set(example_env()) - known}"


def test_app_services_use_the_bucket_that_minio_serves_and_the_bucket_service_creates():
    services = compose()["services"]
    minio, bucket = services["minio"], services["bucket"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["ARTIFACT_STORAGE_BACKEND"] == "s3"
        endpoint = urlsplit(env["ARTIFACT_S3_ENDPOINT_URL"])
        assert endpoint.hostname == "minio" and f"--address :{endpoint.port}" in " ".join(minio["command"])
        assert env["ARTIFACT_S3_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]
        assert env["ARTIFACT_S3_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
        assert f"store/{env['ARTIFACT_S3_BUCKET']}" in bucket["entrypoint"][-1]
        assert f"mc alias set store {env['ARTIFACT_S3_ENDPOINT_URL']} " in bucket["entrypoint"][-1]
        assert services[name]["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
    assert bucket["environment"] == minio["environment"]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"


def test_depends_on_volumes_and_ports_are_consistent():
    spec = compose()
    services = spec["services"]
    used_volumes, host_ports = set(), []
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services) - {name}, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert not source.startswith((".", "/")), f"{name} mounts a host path {source}: machines share no disk"
            used_volumes.add(source)
        for port in service.get("ports", []):
            *_, host, container = port.split(":")
            assert 0 < int(host) < 65536 and 0 < int(container) < 65536, port
            host_ports.append(int(host))
    assert used_volumes == set(spec["volumes"]), "a declared volume is unused or a used one undeclared"
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    web = services["web"]
    bind = command_of(web)[command_of(web).index("--bind") + 1]
    assert [p.split(":")[-1] for p in web["ports"]] == [bind.rpartition(":")[2]]
    assert f":{bind.rpartition(':')[2]}/healthz" in web["healthcheck"]["test"][-1]
    assert web["command"][2].startswith("python manage.py check --deploy && ")


def test_the_app_environment_passes_check_deploy_against_a_bucket_of_that_name(s3_server, tmp_path):
    """The compose file's settings, with MinIO's address swapped for the loopback S3 server, start cleanly."""
    env = subprocess_env(drop=("DEBUG",), **example_env())
    env.update(compose()["services"]["web"]["environment"])
    s3_client(s3_server).create_bucket(Bucket=env["ARTIFACT_S3_BUCKET"])
    env.update(
        ARTIFACT_S3_ENDPOINT_URL=s3_server, DATABASE_URL="sqlite:///" + str(tmp_path / "db.sqlite3"),
        LABELSITE_VAR_DIR=str(tmp_path), CELERY_BROKER_URL="filesystem://",
    )  # fmt: skip
    out = check_deploy(env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_with_the_example_production_env(tmp_path):
    env = subprocess_env(drop=("DEBUG",), **example_env())
    env.update(DATABASE_URL="sqlite:///" + str(tmp_path / "db.sqlite3"), LABELSITE_VAR_DIR=str(tmp_path))
    out = check_deploy(env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_check_deploy_flags_the_development_secret(tmp_path):
    env = subprocess_env(drop=("SECRET_KEY", "DEBUG"), LABELSITE_VAR_DIR=str(tmp_path))
    out = check_deploy(env)
    assert out.returncode != 0
    assert "SECRET_KEY" in out.stdout + out.stderr
