"""The study's per-feature numbers that need only numpy (so web pages and figures can use them too)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

DEAD_FLOOR = 1e-8  # where the study pins dead features on a log10-frequency axis


def fraction_recovered(*, reference: float, patched: float, clean: float) -> float:
    """(L_reference - L_patched) / (L_reference - L_clean); NaN when the reference gap vanishes.

    With reference = the GSAE's loss this is the study's "fraction of the GSAE's loss gap recovered"; with
    reference = the zero-ablation loss it is the usual loss recovered.
    """
    gap = reference - clean
    return (reference - patched) / gap if abs(gap) > 1e-12 else math.nan


@dataclass
class FrequencySummary:
    """Log10 firing frequencies as the study plots them: dead features pinned at 1e-8 and counted apart."""

    tokens: int
    dead: int
    alive: int
    median_log10_alive: float | None
    resolution_log10: float  # log10(1 / tokens): nothing rarer than this can be told from dead
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**self.__dict__}


def frequency_summary(frequencies: np.ndarray, tokens: int) -> FrequencySummary:
    alive = frequencies[frequencies > 0]
    return FrequencySummary(
        tokens=int(tokens),
        dead=int((frequencies <= 0).sum()),
        alive=int(alive.size),
        median_log10_alive=float(np.median(np.log10(alive))) if alive.size else None,
        resolution_log10=-math.log10(tokens) if tokens > 0 else 0.0,
    )


def log10_frequencies(frequencies: np.ndarray, floor: float = DEAD_FLOOR) -> np.ndarray:
    """log10 of frequencies with dead features (frequency 0) pinned at log10(floor)."""
    return np.log10(np.maximum(frequencies, floor))


def alive_median(values: np.ndarray, alive: np.ndarray) -> float | None:
    """Median over the alive features only (a dead feature is not "novel")."""
    kept = values[alive]
    return float(np.median(kept)) if kept.size else None


def convergence(points: list[dict], *, key: str = "fvu", min_steps: int = 1000, tolerance: float = 0.05) -> dict:
    """Whether a training curve looks converged: its last fifth no longer improves on the fifth before.

    Undertrained when fewer than `min_steps` optimiser steps were taken, or when the mean of `key` over
    the last fifth of the curve is more than `tolerance` (relative) below the mean over the fifth before it.
    """
    values = [(p["step"], p[key]) for p in points if p.get(key) is not None and math.isfinite(p[key])]
    if len(values) < 10:
        return {"steps": values[-1][0] if values else 0, "undertrained": True, "reason": "too few recorded steps"}
    fifth = max(len(values) // 5, 1)
    last = float(np.mean([v for _, v in values[-fifth:]]))
    before = float(np.mean([v for _, v in values[-2 * fifth : -fifth]]))
    drop = (before - last) / abs(before) if before else 0.0
    steps = int(values[-1][0])
    reasons = []
    if steps < min_steps:
        reasons.append(f"only {steps:,} optimiser steps (fewer than {min_steps:,})")
    if drop > tolerance:
        reasons.append(f"{key} still fell {100 * drop:.0f}% over the last fifth of training")
    return {
        "steps": steps,
        "final": last,
        "drop_last_fifth": drop,
        "undertrained": bool(reasons),
        "reason": "; ".join(reasons),
    }
