"""Peer tools run in environments of their own, so their pins never touch ours.

SAEDashboard (`sae-dashboard` 0.8) pins transformer-lens < 3, transformers < 4.57 and safetensors < 0.5,
which conflict with this project's stack. `peer_python("sae-dashboard")` returns the interpreter of a
virtual environment under `var/peers/` that holds it (created on first use, or by `make peers`), with the
same torch build as ours so that both sides compute on the same kernels. Scripts in this folder run inside
that environment and talk to us only through files and JSON on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# pyarrow < 21: transformer-lens 2.x keeps numpy < 2, which pyarrow 21+ (pulled in by `datasets`) refuses at import.
PEERS = {"sae-dashboard": ["sae-dashboard==0.8.0", "pyarrow<21"]}
# Pulled in by decode-clt (SAEDashboard's cross-layer transcoders, unused here) as builds for another torch, which
# break transformers' imports (`operator torchvision::nms does not exist`); removed after installing.
UNUSED = {"sae-dashboard": ["torchvision", "torchaudio"]}


class PeerUnavailable(RuntimeError):
    """A peer's environment could not be created (say why, never substitute a re-implementation)."""


def peer_dir(name: str) -> Path:
    return (ROOT / "var" / "peers" / name).resolve()  # var/peers may be a link to a shared folder


def peer_python(name: str, *, install: bool = True) -> Path:
    """The python of the peer's environment, installing it first when missing or made for other requirements
    (and `install` is true)."""
    folder = peer_dir(name)
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    wanted = "\n".join([f"torch=={version('torch')}", *PEERS[name]])
    if marker.exists() and marker.read_text() == wanted:
        return python
    if not install:
        raise PeerUnavailable(f"{name} is not installed; run `make peers`.")
    constraints = folder / "constraints.txt"
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        # Our torch build (e.g. 2.13.0+cpu) on both sides: the comparison measures the tools, not the kernels.
        constraints.write_text(f"torch=={version('torch')}\n")
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-c", str(constraints), f"torch=={version('torch')}"], check=True)
        subprocess.run([*pip, "-c", str(constraints), *PEERS[name]], check=True)
        if UNUSED.get(name):
            subprocess.run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", *UNUSED[name]], check=True)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise PeerUnavailable(f"Could not install {name} into {folder}: {exc}") from exc
    marker.write_text(wanted)
    return python


def run_peer_script(name: str, script: str, *args: str, timeout: float = 3600) -> str:
    """Run `compute/benchmarks/peers/<script>` in the peer's environment; its stdout."""
    python = peer_python(name)
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name(script)), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise PeerUnavailable(f"{name} ({script}) failed:\n{done.stderr[-4000:]}")
    return done.stdout


class PeerSession:
    """A peer script kept running in its environment, answering one JSON request per line.

    The peer loads its model once; the caller interleaves its own runs with the peer's (`request`), so a
    burst of other load on the machine hits one repeat of each, not one tool. Use as a context manager.
    """

    def __init__(self, name: str, script: str, *args: str) -> None:
        self.name, self.script = name, script
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (outlives __init__; close() closes it)
        self._process = subprocess.Popen(
            [str(peer_python(name)), str(Path(__file__).with_name(script)), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=ROOT,
        )  # fmt: skip
        self.ready = self._reply()

    def _reply(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._stderr.seek(0)
            raise PeerUnavailable(f"{self.name} ({self.script}) failed:\n{self._stderr.read()[-4000:]}")
        return json.loads(line)

    def request(self, **request: object) -> dict:
        """Send one request; the peer's JSON answer (PeerUnavailable, with its stderr, if it died)."""
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # it died: _reply reads why
        return self._reply()

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._process.stdin.close()
                self._process.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._stderr.close()

    def __enter__(self) -> PeerSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
