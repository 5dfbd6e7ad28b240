"""`python manage.py demo`: the embedded platform in one command (server + workers on SQLite and the
filesystem broker), with demo accounts and the offline model and corpora registered.

With --smoke it starts everything, proves a job runs in a worker process, and stops: CI runs this.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
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

from labelsite.services.demo import DEMO_CAMPAIGN

DEMO_ACCOUNTS = [("admin", True), ("labeller1", False), ("labeller2", False)]
BAR_WIDTH = 24


class Command(BaseCommand):
    help = (
        "Run the demo study end to end (train, evaluate, dashboards, explanations, decompositions, a blind "
        "campaign), with the web server and workers on the embedded default. Ctrl+C stops; re-run resumes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--smoke", action="store_true", help="Start, run one job through a worker, stop.")
        parser.add_argument("--no-pipeline", action="store_true", help="Only serve: do not run the demo study.")
        parser.add_argument("--exit-when-done", action="store_true", help="Stop once the study's stages are done.")
        real = parser.add_argument_group("real settings (defaults: the offline CPU demo)")
        real.add_argument("--model", default="", help="Language model: Hugging Face name or local folder.")
        real.add_argument("--hook", default="", help="Hook to read, e.g. blocks.6.hook_resid_post.")
        real.add_argument("--general", default="", help="General corpus: HF dataset name or a local file/folder.")
        real.add_argument("--domain", default="", help="Domain corpus: HF dataset name or a local file/folder.")
        real.add_argument("--text-column", default="text", help="Text column of HF datasets.")
        real.add_argument("--gsae-release", default="", help="Pretrained GSAE: sae-lens release (with --gsae-id).")
        real.add_argument("--gsae-id", default="", help="Pretrained GSAE: the SAE id within the release.")
        real.add_argument("--gsae-width", type=int, default=0, help="Pretrained GSAE: its number of features.")
        real.add_argument("--gsae-d-in", type=int, default=0, help="Pretrained GSAE: its input width (d_model).")
        real.add_argument("--gsae-tokens", type=int, default=0, help="GSAE training tokens.")
        real.add_argument("--domain-tokens", type=int, default=0, help="Domain SAE training tokens.")
        real.add_argument("--l1", type=float, nargs="+", default=None, help="Sparsity sweep (L1 coefficients).")
        real.add_argument("--features", type=int, default=20, help="Campaign features per source SAE.")
        real.add_argument(
            "--prefix", default="demo", help="Name prefix of this study's runs (a new one = a new study)."
        )
        parser.add_argument("--admin-password", default=os.environ.get("DEMO_ADMIN_PASSWORD", ""))
        parser.add_argument("--labeller-password", default=os.environ.get("DEMO_LABELLER_PASSWORD", ""))

    def handle(self, *args, host: str, port: int, smoke: bool, no_pipeline: bool, **options) -> None:
        self.started = time.monotonic()
        self.exit_when_done = options["exit_when_done"]
        self.log_dir = Path(settings.VAR_DIR) / "log"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _quiet(self.log_dir / "demo.log")
        self._line("setup", "migrating the database, accounts, model and corpora")
        call_command("migrate", interactive=False, verbosity=0)
        credentials = self._accounts(options["admin_password"], options["labeller_password"])
        config = None if smoke or no_pipeline else self._register(options)
        self._line("setup", "done", 1.0, end=True)
        procs = self._start(host, port)
        # `kill` or a closed terminal must stop the server and workers too, not orphan them; and SIGINT stops the
        # demo even where it was started in the background by a script (a shell without job control ignores it).
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _raise_keyboard_interrupt)
        try:
            self._wait_for_web(host, port, procs)
            if smoke:
                self._smoke()
                return
            base = f"http://{host}:{port}"
            self._line("services", f"web server {base}/ and workers (their output: {self.log_dir}/)", 1.0, end=True)
            for username, password in credentials:
                self.stdout.write(f"  new account {username} / {password}   (shown once: note it)")
            if config is not None:
                ready = self._pipeline(config, base, procs)
                if options["exit_when_done"]:
                    if not ready:
                        raise CommandError("The demo is not ready (see above); --exit-when-done exits non-zero.")
                    return
            self.stdout.write(self.style.SUCCESS(f"Labelsite is running at {base}/ ; Ctrl+C stops it."))
            while all(p.poll() is None for p in procs):
                time.sleep(2)
            raise CommandError(f"A demo process exited unexpectedly; see its log in {self.log_dir}/.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping… (run `make demo` again to resume)")
        finally:
            self._stop(procs)

    # ------------------------------------------------------------------ terminal
    def _line(self, stage: str, message: str, fraction: float | None = None, *, end: bool = False) -> None:
        """One line per stage: a bar redrawn in place on a terminal, printed when it ends elsewhere."""
        elapsed = time.monotonic() - self.started
        bar = ""
        if fraction is not None:
            filled = int(round(max(0.0, min(1.0, fraction)) * BAR_WIDTH))
            bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} "
        text = f"{int(elapsed) // 60:3d}:{int(elapsed) % 60:02d}  {stage:<10} {bar}{message}"[:150]
        if self.stdout.isatty():
            self.stdout.write(f"\r\033[K{text}", ending="\n" if end else "")
            self.stdout.flush()
        else:  # a log file: a line when the stage, its message or its tenth of progress changes
            key = (stage, message.split(":")[0][:30], int((fraction or 0.0) * 10))
            if end or getattr(self, "_last", None) != key:
                self.stdout.write(text)
                self._last = key

    def _pipeline(self, config, base: str, procs: list[subprocess.Popen]) -> bool:
        """Run the stages; True when the study is evaluated and the campaign open.

        A stage that fails, or anything unexpected, is reported in plain words with the page to open next, and
        the server and workers keep running: the demo never ends in a traceback.
        """
        from labelsite.selectors.demo import demo_status
        from labelsite.services.demo import STAGES, Demo, DemoError

        users = get_user_model().objects
        demo = Demo(
            config,
            admin=users.get(username="admin"),
            labeller_ids=users.filter(username__startswith="labeller").values_list("pk", flat=True),
        )
        current = 0
        try:
            while current < len(STAGES):
                if any(p.poll() is not None for p in procs):
                    raise CommandError(f"A demo process exited unexpectedly; see its log in {self.log_dir}/.")
                states = demo.step()
                while current < len(STAGES) and states[STAGES[current]].done:
                    state = states[STAGES[current]]
                    outcome = f"done with a warning: {state.error}" if state.error else f"done ({state.note})"
                    self._line(state.name, outcome, 1.0, end=True)
                    current += 1
                if current < len(STAGES):
                    state = states[STAGES[current]]
                    jobs = ", ".join(f"{base}/compute/jobs/{j.pk}/" for j in state.jobs[:1])
                    self._line(state.name, f"{state.message or 'queued'}  {jobs}", state.progress)
                    time.sleep(1)
        except DemoError as exc:
            self._line(exc.stage or STAGES[current], "did not finish", end=True)
            self._stopped(base, str(exc), meaning=exc.meaning, path=exc.path, fix=exc.fix)
        except CommandError:
            raise
        except Exception as exc:  # a bug of ours: the traceback goes to the log, the user gets the way on
            stage = STAGES[min(current, len(STAGES) - 1)]
            logging.getLogger("labelsite.demo").exception("demo stage %s", stage)
            self._line(stage, "did not finish", end=True)
            self._stopped(
                base,
                f"{stage}: unexpected {type(exc).__name__}: {exc}",
                meaning="the demo stopped at this stage because of an error in Labelsite itself",
                path="/compute/",
                fix=f"the traceback is in {self.log_dir / 'demo.log'}; run `make demo` again to resume, "
                "and report it if it happens again",
            )
        campaign = demo.campaign()
        study = demo.study()
        audit = (campaign.audit or {}) if campaign else {}
        status = demo_status(prefix=demo.prefix, campaign_name=demo.config.campaign_name)
        evaluated = status["study"]["evaluated"]
        opened = status["campaign"]["status"] == "open"
        self.stdout.write(self.style.SUCCESS("\nThe demo study is ready. Open first:" if demo.finished else "\nOpen:"))
        if study is not None:
            what = "the study and its three figures" if evaluated else "the study (not evaluated yet)"
            self.stdout.write(f"  1. {what:<36} {base}/compute/studies/{study.pk}/  (as admin)")
        if campaign is not None:
            verdict = " (blinding audit: " + _audit_line(audit) + ")" if audit else ""
            state = "" if opened else f" [{campaign.get_status_display().lower()}]"
            self.stdout.write(f"  2. the blind campaign{state}{verdict}  {base}/manage/campaigns/{campaign.pk}/")
        if opened:
            self.stdout.write(f"  3. label as labeller1 or labeller2                 {base}/label/")
        return status["ready"]

    def _stopped(self, base: str, what: str, *, meaning: str, path: str, fix: str) -> None:
        """A stage that did not finish, in plain words: what happened, what it means, the one thing to do."""
        self.stdout.write(self.style.ERROR(f"\nThe demo stopped: {what}"))
        if meaning:
            self.stdout.write(f"What it means: {meaning}.")
        where = f"open {base}{path} (as admin) and " if path else ""
        self.stdout.write(f"Next: {where}{fix or 'run `make demo` again to resume'}.")
        if not self.exit_when_done:
            self.stdout.write(f"The web server and the workers keep running at {base}/ .")

    # ------------------------------------------------------------------ setup
    def _accounts(self, admin_password: str, labeller_password: str) -> list[tuple[str, str]]:
        """Create missing accounts; return (username, password) of those created now (printed once)."""
        users = get_user_model()
        created = []
        for username, staff in DEMO_ACCOUNTS:
            if users.objects.filter(username=username).exists():
                continue
            password = (admin_password if staff else labeller_password) or secrets.token_urlsafe(12)
            users.objects.create_user(username, f"{username}@example.org", password, is_staff=staff, is_superuser=staff)
            created.append((username, password))
        return created

    def _register(self, options: dict):
        """The records the study runs on: the offline defaults, or what the options name."""
        from compute.models import SAE, Corpus, LanguageModel
        from compute.services import registry
        from labelsite.services.demo import demo_config

        model, (general, domain) = registry.register_defaults()
        if options["model"]:
            local = Path(options["model"]).expanduser().exists()
            model = registry.language_model_register(
                name=Path(options["model"]).name if local else options["model"].replace("/", "-"),
                source=LanguageModel.Source.LOCAL if local else LanguageModel.Source.HUB,
                location=str(Path(options["model"]).expanduser().resolve()) if local else options["model"],
                default_hook=options["hook"],
            )
        corpora = {}
        for key, kind, default in (("general", Corpus.Kind.GENERAL, general), ("domain", Corpus.Kind.DOMAIN, domain)):
            location = options[key]
            if not location:
                corpora[key] = default
                continue
            local = Path(location).expanduser().exists()
            name = (Path(location).stem if local else location.replace("/", "-"))[:90]
            corpora[key] = Corpus.objects.filter(name=name).first() or registry.corpus_register(
                name=name,
                kind=kind,
                source=Corpus.Source.FILES if local else Corpus.Source.HUB,
                location=str(Path(location).expanduser().resolve()) if local else location,
                text_column=options["text_column"],
            )
        overrides: dict = {"name_prefix": options["prefix"]}
        if options["hook"]:
            overrides["hook_name"] = options["hook"]
        if options["gsae_tokens"]:
            overrides["gsae_tokens"] = options["gsae_tokens"]
        if options["domain_tokens"]:
            overrides["domain_tokens"] = options["domain_tokens"]
        if options["l1"]:
            overrides["l1_coefficients"] = options["l1"]
        gsae_id = None
        if options["gsae_release"]:
            d_in = options["gsae_d_in"] or int(model.info.get("d_model") or 0)
            if not (options["gsae_id"] and options["gsae_width"] and options["hook"] and d_in):
                raise CommandError(
                    "A pretrained GSAE needs --gsae-release, --gsae-id, --gsae-width, --gsae-d-in and --hook."
                )
            name = f"{options['prefix']}-gsae-{options['gsae_release']}"[:100].replace("/", "-")
            gsae = SAE.objects.filter(name=name).first() or registry.sae_register_pretrained(
                name=name,
                release=options["gsae_release"],
                sae_id=options["gsae_id"],
                language_model=model,
                hook_name=options["hook"],
                d_in=d_in,
                d_sae=options["gsae_width"],
            )
            gsae_id = gsae.pk
        return demo_config(
            model=model,
            general=corpora["general"],
            domain=corpora["domain"],
            overrides=overrides,
            gsae_id=gsae_id,
            n_features=options["features"],
            campaign_name=DEMO_CAMPAIGN if options["prefix"] == "demo" else f"{options['prefix']}: blind",
        )

    def _start(self, host: str, port: int) -> list[subprocess.Popen]:
        """Workers, the probe worker and the web server, each writing to its own log file under var/log/."""
        python = sys.executable
        root = Path(settings.BASE_DIR)
        worker = [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--prefetch-multiplier", "1"]
        commands = {
            "worker-default": [*worker, "-Q", "default", "--concurrency", "1", "-n", "default@%h"],
            "worker-gpu": [*worker, "-Q", "gpu", "--concurrency", "1", "-n", "gpu@%h"],
            "probe-worker": [python, "manage.py", "probe_worker"],  # live probes (keeps the model loaded)
            "web": [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
        }
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
        procs = []
        for name, cmd in commands.items():
            log = open(self.log_dir / f"demo-{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
            procs.append(
                subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
            )
            log.close()
        return procs

    def _wait_for_web(self, host: str, port: int, procs: list[subprocess.Popen]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise CommandError(f"A demo process failed to start; see its log in {self.log_dir}/.")
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


def _audit_line(audit: dict) -> str:
    try:
        p, c = audit["presentation"], audit["content"]
        swap = "passed" if p["swap_test"]["passed"] else "failed"
        return (
            f"presentation {p['verdict']}: swap test {swap}, source predicted {p['accuracy']:.2f}, chance "
            f"{p['chance']:.2f}; content tells the sources apart at {c['accuracy']:.2f}, see the campaign page"
        )
    except (KeyError, TypeError, ValueError):
        return "see the campaign page"


def _quiet(path: Path) -> None:
    """This process's library warnings and log records go to `path`, not the terminal (the progress lines do)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.captureWarnings(True)
    for name in ("", "py.warnings", "kombu", "celery", "django", "compute", "labelsite", "config"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
