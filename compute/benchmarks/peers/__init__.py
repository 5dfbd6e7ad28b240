"""Peer tools run in environments of their own, so their pins never touch ours.

SAEDashboard (`sae-dashboard` 0.8) pins transformer-lens < 3, transformers < 4.57 and safetensors < 0.5,
which conflict with this project's stack. `peer_python("sae-dashboard")` returns the interpreter of a
virtual environment under `var/peers/` that holds it (created on first use, or by `make peers`), with the
same torch build as ours so that both sides compute on the same kernels. Scripts in this folder run inside
that environment and talk to us only through files and JSON on stdout.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PEERS = {"sae-dashboard": ["sae-dashboard==0.8.0"]}


class PeerUnavailable(RuntimeError):
    """A peer's environment could not be created (say why, never substitute a re-implementation)."""


def peer_dir(name: str) -> Path:
    return (ROOT / "var" / "peers" / name).resolve()  # var/peers may be a link to a shared folder


def peer_python(name: str, *, install: bool = True) -> Path:
    """The python of the peer's environment, installing it first when missing (and `install` is true)."""
    folder = peer_dir(name)
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    if marker.exists():
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
    except (subprocess.CalledProcessError, OSError) as exc:
        raise PeerUnavailable(f"Could not install {name} into {folder}: {exc}") from exc
    marker.touch()
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
