"""A world for chaos tests: a throwaway database, the configured broker, real `celery worker` processes
(prefork, so a pool process can be killed) and a driver process that creates and reads jobs there.

The test process never touches that database itself: it asks the driver (this module run as
`python -m tests.services.chaos_world`, one JSON command per line on stdin, one JSON answer per line
on stdout). With no environment the broker is the embedded filesystem transport in the world's own
folder; with CELERY_BROKER_URL (Redis in CI) it is that broker, purged first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


class World:
    """Subprocesses sharing one database and broker; everything is stopped by `close()`."""

    def __init__(
        self, folder: Path, database_url: str, *, driver: str = "tests.services.chaos_world", cwd: Path = ROOT,
        **settings: str,
    ) -> None:  # fmt: skip
        from tests.conftest import subprocess_env

        self.folder = folder
        broker = os.environ.get("CELERY_BROKER_URL", "")
        drop = () if broker.startswith("redis") else ("CELERY_BROKER_URL",)
        self.env = subprocess_env(
            drop=drop, DATABASE_URL=database_url, LOG_LEVEL="INFO", **{"LABELSITE_VAR_DIR": str(folder), **settings}
        )
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], cwd=cwd, env=self.env,
            check=True,
        )  # fmt: skip
        self.workers: list[subprocess.Popen] = []
        self.driver = subprocess.Popen(
            [sys.executable, "-m", driver],
            cwd=cwd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        self.call("purge")

    def call(self, command: str, **args: Any) -> Any:
        assert self.driver.stdin and self.driver.stdout
        self.driver.stdin.write(json.dumps({"command": command, **args}) + "\n")
        while True:  # anything else the driver prints (a library's chatter) is not an answer
            line = self.driver.stdout.readline()
            if not line:
                raise AssertionError(f"the driver died on {command!r}")
            if line.startswith('{"ok"') or line.startswith('{"error"'):
                break
        answer = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"driver: {answer['error']}")
        return answer["ok"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self.call("job", job_id=job_id)

    def start_worker(
        self, name: str, *, queues: str = "default,gpu", cwd: Path = ROOT, **settings: str
    ) -> subprocess.Popen:
        """A `celery worker` process; `cwd` and `settings` (environment) make it a machine of its own."""
        log = open(self.folder / f"worker-{name}.log", "ab")  # noqa: SIM115 - closed with the process
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
             "--queues", queues, "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "INFO"],
            cwd=cwd, env={**self.env, **settings}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.workers.append(worker)
        return worker

    def pool_process(self, worker: subprocess.Popen, timeout: float = 60.0) -> int:
        """The pid of the worker's (single) pool process."""
        import psutil

        children = wait_for(lambda: psutil.Process(worker.pid).children(), timeout, what="a pool process")
        return children[0].pid

    def log(self, name: str) -> str:
        path = self.folder / f"worker-{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGQUIT)  # cold: do not wait for a job
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.workers = []

    def close(self) -> None:
        self.stop_workers()
        if self.driver.poll() is None:
            self.driver.stdin.close()
            self.driver.wait(timeout=30)


# ----------------------------------------------------------------------------- driver side


def _job(job_id: int) -> dict[str, Any]:
    from compute.models import Job

    job = Job.objects.get(pk=job_id)
    fields = ("status", "attempt", "lost_attempts", "progress", "message", "stats", "result", "worker", "error")
    return {**{f: getattr(job, f) for f in fields}, "is_lost": job.is_lost, "stop_requested": job.stop_requested}


def _setup_training(folder: str) -> dict[str, int]:
    from compute.services import registry
    from tests.factories import tiny_model_folder

    root = Path(folder)
    model_dir = tiny_model_folder(root / "tiny-model", seed=11)
    sentences = [
        f"Sample {i}: the radio emission of planet {i % 7} varies with its surface layer." for i in range(4000)
    ]
    (root / "domain.txt").write_text("\n\n".join(sentences), encoding="utf-8")
    lm = registry.language_model_register(name="tiny", source="local", location=str(model_dir))
    corpus = registry.corpus_register(name="domain", kind="domain", source="files", location=str(root / "domain.txt"))
    return {"language_model_id": lm.pk, "corpus_id": corpus.pk}


def _saes(job_id: int) -> list[dict[str, Any]]:
    from compute.models import SAE
    from config.storage import artifact_storage

    storage = artifact_storage()
    return [
        {"name": s.name, "status": s.status, "run_key": s.hyperparams.get("run_key"),
         "path": storage.path(s.artifact_path) if s.artifact_path else ""}
        for s in SAE.objects.filter(job_id=job_id).order_by("pk")
    ]  # fmt: skip


def _handle(request: dict[str, Any]) -> Any:
    from compute import jobs
    from config.celery import app

    command = request["command"]
    if command == "purge":
        return app.control.purge()
    if command == "create_job":
        return jobs.job_create(kind=request["kind"], params=request.get("params", {})).pk
    if command == "job":
        return _job(request["job_id"])
    if command == "enqueue":  # one more message for the job's current attempt, as a broker redelivery would
        jobs.job_enqueue(job_id=request["job_id"])
        return True
    if command == "run_inline":
        job = jobs.job_create(kind=request["kind"], params=request.get("params", {}), enqueue=False)
        jobs.job_run(job_id=job.pk, attempt=job.attempt, worker="inline")
        return job.pk
    if command == "setup_training":
        return _setup_training(request["folder"])
    if command == "saes":
        return _saes(request["job_id"])
    raise ValueError(f"unknown command {command!r}")


def main(handle: Callable[[dict[str, Any]], Any] = _handle) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    for line in sys.stdin:
        try:
            answer = {"ok": handle(json.loads(line))}
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
