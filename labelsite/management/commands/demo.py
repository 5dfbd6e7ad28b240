"""`python manage.py demo`: the embedded platform in one command (server + workers on SQLite and the
filesystem broker), with demo accounts and the offline model and corpora registered.

With --smoke it starts everything, proves a job runs in a worker process, and stops: CI runs this.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

DEMO_ACCOUNTS = [
    ("admin", "admin-demo-pass", True),
    ("labeller1", "labeller-demo-pass", False),
    ("labeller2", "labeller-demo-pass", False),
]


class Command(BaseCommand):
    help = "Run the demo: web server and Celery workers on the embedded default (Ctrl+C stops everything)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--smoke", action="store_true", help="Start, run one job through a worker, stop.")
        parser.add_argument(
            "--no-pipeline", action="store_true", help="Only serve: do not queue the demo training run and campaign."
        )

    def handle(self, *args, host: str, port: int, smoke: bool, no_pipeline: bool, **options) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self._accounts()
        self._register_defaults()
        pipeline = None if smoke or no_pipeline else DemoPipeline(self.stdout)
        procs = self._start(host, port)
        # `kill` or a closed terminal must stop the server and workers too, not orphan them.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_keyboard_interrupt)
        try:
            self._wait_for_web(host, port, procs)
            if smoke:
                self._smoke()
                return
            self.stdout.write(self.style.SUCCESS(f"\nLabelsite is running at http://{host}:{port}/"))
            for username, password, staff in DEMO_ACCOUNTS:
                self.stdout.write(f"  {'admin   ' if staff else 'labeller'}  {username} / {password}")
            self.stdout.write("Press Ctrl+C to stop the server and the workers.\n")
            if pipeline is not None:
                pipeline.start(f"http://{host}:{port}")
            while all(p.poll() is None for p in procs):
                if pipeline is not None:
                    pipeline.advance()
                time.sleep(2)
            raise CommandError("A demo process exited unexpectedly; see its output above.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            self._stop(procs)

    def _accounts(self) -> None:
        users = get_user_model()
        for username, password, staff in DEMO_ACCOUNTS:
            if not users.objects.filter(username=username).exists():
                users.objects.create_user(
                    username, f"{username}@example.org", password, is_staff=staff, is_superuser=staff
                )

    def _register_defaults(self) -> None:
        from compute.services.registry import register_defaults

        model, corpora = register_defaults()
        self.stdout.write(
            f"Registered the offline model {model.name} and corpora {', '.join(c.name for c in corpora)}."
        )

    def _start(self, host: str, port: int) -> list[subprocess.Popen]:
        python = sys.executable
        root = Path(settings.BASE_DIR)
        worker = [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--prefetch-multiplier",
            "1",
        ]
        commands = [
            [*worker, "-Q", "default", "--concurrency", "1", "-n", "default@%h"],
            [*worker, "-Q", "gpu", "--concurrency", "1", "-n", "gpu@%h"],
            [python, "manage.py", "probe_worker"],  # live probes on feature pages (keeps the model loaded)
            [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return [subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True) for cmd in commands]

    def _wait_for_web(self, host: str, port: int, procs: list[subprocess.Popen]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise CommandError("A demo process failed to start; see its output above.")
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2) as response:
                    if json.load(response).get("ok"):
                        return
            except OSError:
                time.sleep(0.5)
        raise CommandError(f"The web server did not answer on {host}:{port} within 60 s (is the port free?).")

    def _smoke(self) -> None:
        from compute.jobs import job_create
        from compute.models import Job, JobKind, JobStatus

        job = job_create(kind=JobKind.SELFCHECK, params={"steps": 3, "delay_s": 0.1})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_finished:
                break
            time.sleep(0.3)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Smoke job did not succeed: {job.status} {job.error}")
        if job.result.get("pid") == os.getpid():
            raise CommandError("Smoke job ran inside the management command, not in a worker.")
        self.stdout.write(
            json.dumps({"smoke": "ok", "job": job.pk, "worker_pid": job.result["pid"], "worker": job.worker})
        )
        Job.objects.filter(pk=job.pk).delete()

    def _stop(self, procs: list[subprocess.Popen]) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class DemoPipeline:
    """Queues the demo training run, then opens the blind campaign when it has succeeded; says what happens."""

    def __init__(self, out) -> None:
        self.out = out
        self.job_id: int | None = None
        self.done = False

    def start(self, base_url: str) -> None:
        from compute.models import Corpus, LanguageModel
        from compute.services.registry import DEFAULT_MODEL_NAME
        from labelsite.services.demo import demo_training_start

        self.base_url = base_url
        users = get_user_model().objects
        job = demo_training_start(
            model=LanguageModel.objects.get(name=DEFAULT_MODEL_NAME),
            general=Corpus.objects.get(name="web"),
            domain=Corpus.objects.get(name="science"),
            created_by=users.get(username="admin"),
        )
        self.job_id = job.pk
        self.out.write(
            f"Demo run: training a GSAE on 'web' and a Direct SAE and an SSAE on 'science' (job {job.pk}).\n"
            f"  Follow it at {base_url}/compute/jobs/{job.pk}/ ; the blind campaign opens when it is done."
        )

    def advance(self) -> None:
        from compute.models import Corpus, Job, JobStatus
        from labelsite.models import Campaign
        from labelsite.services import LabelError
        from labelsite.services.demo import demo_campaign_open

        if self.done or self.job_id is None:
            return
        job = Job.objects.get(pk=self.job_id)
        if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            self.out.write(f"The demo training job {job.pk} {job.status}: {job.message}. Retry it from its page.")
            self.done = True
        elif job.status == JobStatus.SUCCEEDED:
            users = get_user_model().objects
            try:
                campaign = demo_campaign_open(
                    job=job,
                    general=Corpus.objects.get(name="web"),
                    domain=Corpus.objects.get(name="science"),
                    labeller_ids=users.filter(username__startswith="labeller").values_list("pk", flat=True),
                    created_by=users.get(username="admin"),
                )
            except LabelError as exc:
                self.out.write(f"The demo campaign could not be created: {exc}")
            else:
                state = "is open" if campaign.status == Campaign.Status.OPEN else "opens once its dashboards are built"
                self.out.write(
                    f"Demo campaign '{campaign.name}' {state}: {self.base_url}/manage/campaigns/{campaign.pk}/ ;"
                    f" labellers start at {self.base_url}/label/"
                )
            self.done = True
