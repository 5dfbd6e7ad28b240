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
