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


@dataclass(frozen=True)
class HealthRules:
    """The stated thresholds of the training health flags (see `training_health`)."""

    spike_factor: float = 3.0  # unstable: a point above this multiple of the median of the points before it
    spike_floor: float = 0.1  # ... and above that median by at least this much (FVU is scale-free)
    spike_window: int = 8  # points before it whose median it is compared with (at least 3 needed)
    worse_factor: float = 1.5  # worse than its best: final above this multiple of the best of the second half
    smooth: int = 5  # points in the running median that smooths a curve before best and final are read
    collapsed_l0: float = 1.0  # collapsed: fewer active features per token than this...
    collapsed_dead_share: float = 0.5  # ... or more than this share of the features dead
    diverged_fvu: float = 1.0  # diverged: FVU on the eval split at least this (no better than the mean)
    dense_share: float = 0.1  # dense: more active features per token than this share of d_sae
    min_steps: int = 1000  # undertrained: fewer optimiser steps (see `convergence`)


HEALTH = HealthRules()

HEALTH_FLAGS: dict[str, str] = {
    "undertrained": "undertrained",
    "unstable": "unstable",
    "worse_than_best": "worse than its best",
    "collapsed": "collapsed",
    "diverged": "diverged",
    "dense": "dense",
}


def spikes(values: list[float], *, rules: HealthRules = HEALTH) -> list[int]:
    """Indices of the values more than `spike_factor` times (and `spike_floor` above) the median of the
    `spike_window` values before them."""
    found = []
    for i in range(3, len(values)):
        median = float(np.median(values[max(0, i - rules.spike_window) : i]))
        if values[i] > rules.spike_factor * median and values[i] - median > rules.spike_floor:
            found.append(i)
    return found


def running_median(values: list[float], window: int) -> np.ndarray:
    """Median of each value with the `window - 1` before it (fewer at the start)."""
    return np.array([np.median(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))])


def training_health(
    points: list[dict],
    *,
    d_sae: int,
    final: dict | None = None,
    eval_fvu: float | None = None,
    rules: HealthRules = HEALTH,
) -> dict:
    """Flags of a training run judged from its recorded curve (`points`: step, fvu, l0), its final training
    statistics (`final`: l0, dead, as TrainerStats records them) and its FVU on an eval split.

    Returns {"flags": [{"flag", "label", "reason"}], "spikes": count}; a flag is one of `HEALTH_FLAGS`:
    undertrained (see `convergence`), unstable (a spike on the FVU curve), worse than its best (the smoothed final
    FVU above `worse_factor` times the smoothed best of the curve's second half, after any warm-up), collapsed (L0
    below `collapsed_l0` or most features dead), diverged (eval FVU at least `diverged_fvu`; the smoothed final
    training FVU when there is no eval), dense (L0 above `dense_share` of d_sae).
    """
    final = final or {}
    flags: list[dict[str, str]] = []

    def flag(name: str, reason: str) -> None:
        flags.append({"flag": name, "label": HEALTH_FLAGS[name], "reason": reason})

    fvu = [float(p["fvu"]) for p in points if p.get("fvu") is not None and math.isfinite(p["fvu"])]
    if points:
        verdict = convergence(points, min_steps=rules.min_steps)
        if verdict["undertrained"]:
            flag("undertrained", verdict["reason"])
    found = spikes(fvu, rules=rules)
    if found:
        worst = max(fvu[i] for i in found)
        flag("unstable", f"{len(found)} spike{'s' if len(found) > 1 else ''} in FVU (up to {worst:.3g})")
    smoothed = running_median(fvu, rules.smooth) if fvu else np.array([])
    if len(smoothed) >= 2 * rules.smooth:
        best = float(smoothed[len(smoothed) // 2 :].min())
        last = float(smoothed[-1])
        if last > rules.worse_factor * best:
            flag("worse_than_best", f"FVU ends at {last:.3g}, its best was {best:.3g}")
    l0, dead = final.get("l0"), final.get("dead")
    if l0 is not None and l0 < rules.collapsed_l0:
        flag("collapsed", f"L0 {l0:.3g}: fewer than {rules.collapsed_l0:g} active features per token")
    elif dead is not None and d_sae and dead > rules.collapsed_dead_share * d_sae:
        flag("collapsed", f"{dead:,} of {d_sae:,} features dead")
    judged = eval_fvu if eval_fvu is not None else (float(smoothed[-1]) if len(smoothed) else None)
    if judged is not None and judged >= rules.diverged_fvu:
        where = "on its eval split" if eval_fvu is not None else "at the end of training"
        flag("diverged", f"FVU {judged:.3g} {where}: no better than predicting the mean")
    if l0 is not None and d_sae and l0 > rules.dense_share * d_sae:
        flag("dense", f"L0 {l0:.3g}: more than {rules.dense_share:.0%} of its {d_sae:,} features per token")
    return {"flags": flags, "spikes": len(found)}


def seed_claims(rows: list[dict]) -> dict:
    """Whether the domain-SAE study's claims hold, row by row: each SSAE against the GSAE-finetune and the Direct SAE
    nearest to it in L0 (log distance; an SSAE's L0 includes its GSAE's). An SSAE's features should be rarer on
    general text (lower median log10 frequency), newer (lower median max decoder cosine to the GSAE) and recover
    more of the domain features the GSAE misses. A claim holds when it holds in every comparison made."""
    comparisons = []
    for ssae in (r for r in rows if r["method"] == "ssae" and r.get("l0")):
        for method in ("finetune", "direct"):
            others = [r for r in rows if r["method"] == method and r.get("l0")]
            if not others:
                continue
            other = min(others, key=lambda r: abs(math.log(r["l0"] / ssae["l0"])))
            comparisons.append(
                {
                    "ssae": ssae["name"],
                    "ssae_l0": ssae["l0"],
                    "other": other["name"],
                    "other_method": method,
                    "other_l0": other["l0"],
                    "rarer": _below(ssae.get("median_log10_freq_general"), other.get("median_log10_freq_general")),
                    "newer": _below(ssae.get("median_max_cos_decoder"), other.get("median_max_cos_decoder")),
                    "covers_missed": ssae.get("gsae_missed_recovered", 0) > other.get("gsae_missed_recovered", 0),
                }
            )
    claims = ("rarer", "newer", "covers_missed")
    return {
        "comparisons": comparisons,
        **{claim: bool(comparisons) and all(c[claim] for c in comparisons) for claim in claims},
    }


def _below(value: float | None, other: float | None) -> bool:
    return value is not None and other is not None and value < other
