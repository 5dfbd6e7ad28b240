"""The GPU check: small runs of each compute path (live-probe encoding, study evaluation, dashboard build, SAE
training) on one device, and their comparison with the same runs on another (a CUDA card against the CPU),
within tolerances stated per precision. `python manage.py gpu_check` runs it; pure ML, no Django.

The same fixed SAE (seeded on the CPU) is used on both devices, so probe, study and dashboard outputs differ only
by arithmetic; training starts from the same seed, so its figures differ by arithmetic compounded over steps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Elementwise |a - b| <= atol + rtol * |a| (numpy's allclose), per precision of the checked run. bfloat16 keeps
# 8 bits of mantissa (relative step 2^-8 ~ 0.4 %); a forward pass through a few layers compounds it to a few %.
TOLERANCES: dict[str, dict[str, float]] = {
    "float32": {"rtol": 1e-3, "atol": 1e-4},
    "bfloat16": {"rtol": 8e-2, "atol": 5e-2},
}
# Firing frequencies (fractions of tokens) move in steps of 1/tokens when a value near zero changes sign: an
# absolute bound on the fraction, per precision.
FREQUENCY_ATOL: dict[str, float] = {"float32": 1e-3, "bfloat16": 2e-2}
FREQUENCY_OUTPUTS = ("frequencies", "firing_fraction")
# Training's summary figures (FVU, L0 after a few hundred steps) drift further: relative bound per precision.
TRAINING_RTOL: dict[str, float] = {"float32": 0.05, "bfloat16": 0.25}


@dataclass(frozen=True)
class StageRun:
    """One stage on one device: its outputs (arrays) and what it took."""

    outputs: dict[str, np.ndarray]
    seconds: float
    tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")


def compare(
    reference: Mapping[str, Any], candidate: Mapping[str, Any], *, rtol: float, atol: float
) -> dict[str, dict[str, Any]]:
    """Per output: the largest absolute difference, the largest excess over `atol + rtol * |reference|`
    (<= 0 when within) and whether it is within; a missing output or a shape change is never within."""
    report = {}
    for key, want in reference.items():
        a = np.asarray(want, dtype=np.float64)
        if key not in candidate or np.shape(candidate[key]) != a.shape:
            report[key] = {"ok": False, "max_abs_diff": None, "excess": None, "shape": list(a.shape)}
            continue
        b = np.asarray(candidate[key], dtype=np.float64)
        diff = np.abs(a - b)
        excess = diff - (atol + rtol * np.abs(a))
        finite = bool(np.isfinite(b).all())
        report[key] = {
            "ok": finite and bool((excess <= 0).all()),
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "excess": float(excess.max()) if excess.size else 0.0,
        }
    return report


def fixed_sae(d_in: int, d_sae: int, *, seed: int = 0):
    """A StandardSAE with seeded random weights (made on the CPU, so every device gets the same numbers)."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    generator = torch.Generator().manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) / d_in**0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        sae.b_enc.copy_(torch.randn(d_sae, generator=generator) * 0.1)
    return sae


def run_stages(
    loaded,
    texts: Sequence[str],
    *,
    hook_name: str,
    device: str,
    d_sae: int = 256,
    tokens: int = 4096,
    context_size: int = 64,
    batch_size: int = 8,
    train_tokens: int = 8192,
    precision: str = "float32",
    seed: int = 0,
) -> dict[str, StageRun]:
    """Probe, study, dashboards and training of a small run on `device` (the model already there, in its dtype;
    `precision` is the training matmuls', as in compute.ml.training)."""
    from compute.ml.activations import iter_activation_batches, window_stream

    windows = list(window_stream(iter(texts), loaded.tokenizer, split="all", budget=tokens, context_size=context_size))
    sae = fixed_sae(loaded.d_model, d_sae, seed=seed).to(device)

    def batches() -> Iterator:
        return iter_activation_batches(loaded, windows, hook_name=hook_name, batch_size=batch_size, device=device)

    runs = {}
    runs["probe"] = _timed(lambda: _probe(batches(), sae), device)
    runs["study"] = _timed(lambda: _study(loaded, windows, sae, hook_name, batch_size, device), device)
    runs["dashboards"] = _timed(lambda: _dashboards(batches, sae, device), device)
    train_windows = list(
        window_stream(iter(texts), loaded.tokenizer, split="all", budget=train_tokens, context_size=context_size)
    )
    train_batches = iter_activation_batches(loaded, train_windows, hook_name=hook_name, batch_size=batch_size,
                                            device=device)  # fmt: skip
    runs["train"] = _timed(
        lambda: _train(train_batches, batches(), loaded.d_model, train_tokens, device, seed, precision), device
    )
    return runs


def _timed(stage, device: str) -> StageRun:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    outputs, n_tokens = stage()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return StageRun(outputs=outputs, seconds=time.perf_counter() - start, tokens=n_tokens)


def _encode(sae, acts):
    """Feature activations in float32 from activations of any dtype."""
    return sae.encode(acts.to(sae.W_enc.dtype))


def _probe(batches, sae) -> tuple[dict[str, np.ndarray], int]:
    """What the live probe computes: every kept token's feature activations."""
    import torch

    with torch.no_grad():
        feats = [_encode(sae, batch.flat()).float().cpu() for batch in batches]  # [n_kept, d_sae] each
    stacked = torch.cat(feats)
    return {"feature_acts": stacked.numpy()}, int(stacked.shape[0])


def _study(loaded, windows, sae, hook_name: str, batch_size: int, device: str) -> tuple[dict[str, np.ndarray], int]:
    from compute.ml.study import evaluate_domain

    result = evaluate_domain(loaded, windows, hook_name=hook_name, saes={"sae": sae}, stacks={"sae": ["sae"]},
                             batch_size=batch_size, device=device)  # fmt: skip
    figures = result.stacks["sae"]
    outputs = {
        "losses": np.array([result.clean, result.zero_ablation, figures.loss]),
        "reconstruction": np.array([figures.fvu, figures.l0]),
        "frequencies": result.frequencies("sae").numpy(),
    }
    return outputs, result.tokens


def _dashboards(batches, sae, device: str) -> tuple[dict[str, np.ndarray], int]:
    from compute.ml.dashboards import compute_dashboards

    chunks = list(
        compute_dashboards(batches=batches, encode=lambda acts: _encode(sae, acts), d_sae=sae.cfg.d_sae, device=device)
    )
    outputs = {
        "max": np.concatenate([c.max for c in chunks]),
        "mean": np.concatenate([c.mean for c in chunks]),
        "firing_fraction": np.concatenate([c.n_firing for c in chunks]) / max(int(chunks[0].n_tokens), 1),
    }
    return outputs, int(chunks[0].n_tokens)


def _train(train_batches, held_out, d_in: int, tokens: int, device: str, seed: int, precision: str):
    """A Direct SAE trained briefly; its FVU and L0 on the held-out activations."""
    import torch

    from compute.ml.training import run_training, sweep_specs

    specs = sweep_specs(methods=["direct"], architecture="standard", d_in=d_in, expansion=4, l1_coefficients=[1.0])
    trainers, progress = run_training(batches=train_batches, specs=specs, d_in=d_in, total_tokens=tokens,
                                      device=device, minibatch_tokens=256, seed=seed, precision=precision)  # fmt: skip
    sae = trainers[0].inference_sae()
    with torch.no_grad():
        acts = torch.cat([batch.flat().float() for batch in held_out]).to(device)  # [n_kept, d_in]
        feats = sae.encode(acts.to(sae.W_enc.dtype))
        recon = sae.decode(feats).float()
        sq_err = float(((recon - acts) ** 2).sum())
        total = float(((acts - acts.mean(0)) ** 2).sum())
        l0 = float((feats > 0).float().sum(-1).mean())
    return {"fvu": np.array([sq_err / total]), "l0": np.array([l0])}, int(progress.tokens_done)


def check(reference: Mapping[str, StageRun], candidate: Mapping[str, StageRun], *, precision: str) -> dict[str, Any]:
    """Every stage's outputs on the candidate device against the reference's, within the precision's tolerances."""
    bounds = TOLERANCES[precision]
    stages = {}
    for name, ref in reference.items():
        compared = {}
        for key, want in ref.outputs.items():
            if name == "train":
                tolerance = {"rtol": TRAINING_RTOL[precision], "atol": 0.0}
            elif key in FREQUENCY_OUTPUTS:
                tolerance = {"rtol": 0.0, "atol": FREQUENCY_ATOL[precision]}
            else:
                tolerance = bounds
            compared |= compare({key: want}, candidate[name].outputs, **tolerance)
        stages[name] = {
            "ok": all(item["ok"] for item in compared.values()),
            "outputs": compared,
            "tokens_per_s": {"reference": ref.tokens_per_s, "candidate": candidate[name].tokens_per_s},
        }
    return {"ok": all(stage["ok"] for stage in stages.values()), "precision": precision, "stages": stages}
