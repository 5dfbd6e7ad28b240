"""`make demo`'s command brings up the server and workers on the embedded default and runs a job in a worker."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_starts_web_and_workers_on_the_embedded_default(tmp_path):
    env = subprocess_env(
        drop=("DATABASE_URL", "CELERY_BROKER_URL"),
        LABELSITE_VAR_DIR=str(tmp_path),
        DEMO_DATA_DIR=str(ROOT / "var" / "data"),
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "demo", "--smoke", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(next(line for line in out.stdout.splitlines() if line.startswith('{"smoke"')))
    assert report["smoke"] == "ok"
    assert report["worker"].startswith("default@")
    assert (tmp_path / "labelsite.sqlite3").exists()
    assert (tmp_path / "broker" / "queue").is_dir()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a command a script starts with `&`


@pytest.mark.parametrize(
    "signum, started",
    [(signal.SIGTERM, None), (signal.SIGINT, _ignore_sigint)],
    ids=["SIGTERM", "SIGINT-started-in-the-background"],
)
def test_stopping_the_demo_stops_its_server_and_workers(tmp_path, signum, started):
    import time
    import urllib.request

    import psutil

    port = free_port()
    env = subprocess_env(drop=("DATABASE_URL", "CELERY_BROKER_URL"), LABELSITE_VAR_DIR=str(tmp_path))
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--no-pipeline", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=started,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert json.load(response) == {"ok": True}
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo server never answered"
                time.sleep(0.5)
        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 3  # two workers and the web server (plus their pool processes)
        demo.send_signal(signum)
        assert demo.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], f"left running: {[p.cmdline() for p in alive]}"
    finally:
        if demo.poll() is None:
            demo.kill()


@pytest.mark.slow
def test_a_stage_that_fails_leaves_the_server_up_and_says_what_to_do(tmp_path):
    """A wrong setting (a hook the model does not have) fails the train stage: the terminal names the stage, what
    it means and what to do, and the server and workers keep running until the user stops them."""
    import time
    import urllib.request

    port = free_port()
    env = subprocess_env(
        drop=("DATABASE_URL", "CELERY_BROKER_URL"),
        LABELSITE_VAR_DIR=str(tmp_path),
        DEMO_DATA_DIR=str(ROOT / "var" / "data"),
    )
    command = [sys.executable, "manage.py", "demo", "--port", str(port), "--hook", "blocks.99.hook_resid_post"]
    demo = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        assert demo.stdout
        for line in demo.stdout:  # the demo never exits by itself: read up to the report
            lines.append(line)
            if "keep running" in line:
                break
        text = "".join(lines)
        assert "train      did not finish" in text, text
        assert "The demo stopped: train: " in text and "blocks.99.hook_resid_post" in text, text
        assert "What it means: no SAEs were trained" in text, text
        assert "Next: change what it names" in text, text
        assert "Traceback" not in text, text
        time.sleep(3)  # still serving a while later, workers included
        assert demo.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert json.load(response) == {"ok": True}
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()

    # --exit-when-done: the same report, then a non-zero exit.
    out = subprocess.run([*command, "--exit-when-done"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "The demo stopped: train: " in out.stdout and "keep running" not in out.stdout, out.stdout
