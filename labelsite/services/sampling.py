"""Matched sampling: every source of a campaign contributes features with the same log-frequency distribution.

A Direct SAE and an SSAE differ sharply in how often their features fire; drawn at random, the two piles of
items differ in everything that follows from frequency (how many contexts activate, how strongly), which a
rater can see. Stratifying on log10 firing frequency on D (optionally on general text too) removes that
difference by design: strata are equal-width bins over the pooled range; in each stratum every source
contributes the same number of features (at most what the scarcest source has there), allocated across
strata in proportion to that common capacity; features are drawn at random within a stratum.

`matched_sample` is pure (no Django); `sampling_report` says how well the result matched: per source, how
many features were asked for and how many it could not contribute, and the largest two-sample
Kolmogorov-Smirnov distance between sources' log frequencies of the drawn features (scipy).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BINS_1D = 24
BINS_2D = 8  # per dimension when stratifying on domain and general frequency


@dataclass(frozen=True)
class MatchedSample:
    chosen: dict[int, list[int]]  # source key -> feature indices
    strata: list[dict]  # per stratum: edges, available per source, taken per source


def log10_frequencies(freqs: Sequence[float], floor: float) -> list[float]:
    """log10 firing frequency; features that never fired are put at `floor` (below every real frequency)."""
    return [math.log10(f) if f > 0 else floor for f in freqs]


def _edges(values: Sequence[float], n_bins: int) -> list[float]:
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + 1e-9
    return [lo + (hi - lo) * i / n_bins for i in range(n_bins + 1)]


def _bin(value: float, edges: Sequence[float]) -> int:
    n = len(edges) - 1
    return min(n - 1, max(0, int((value - edges[0]) / (edges[-1] - edges[0]) * n)))


def _allocate(capacity: Sequence[int], total: int) -> list[int]:
    """`total` split over strata in proportion to `capacity`, never above it (largest remainders)."""
    cap_sum = sum(capacity)
    total = min(total, cap_sum)
    if total == 0:
        return [0] * len(capacity)
    exact = [c * total / cap_sum for c in capacity]
    out = [min(c, math.floor(e)) for c, e in zip(capacity, exact, strict=True)]
    order = sorted(range(len(capacity)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    while sum(out) < total:
        for i in order:
            if sum(out) == total:
                break
            if out[i] < capacity[i]:
                out[i] += 1
    return out


def matched_sample(
    *, coordinates: Mapping[int, Mapping[int, tuple[float, ...]]], n_per_source: int, seed: str
) -> MatchedSample:
    """Draw up to `n_per_source` features from every source, stratified on their coordinates (log frequencies).

    `coordinates[source][feature] = (log10 freq on D,)` or `(log10 freq on D, log10 freq on general)`.
    """
    sources = sorted(coordinates)
    dims = len(next(iter(next(iter(coordinates.values())).values())))
    n_bins = BINS_1D if dims == 1 else BINS_2D
    edges = [_edges([c[d] for s in sources for c in coordinates[s].values()], n_bins) for d in range(dims)]

    def stratum(c: tuple[float, ...]) -> int:
        index = 0
        for d in range(dims):
            index = index * n_bins + _bin(c[d], edges[d])
        return index

    members: dict[int, list[list[int]]] = {s: [[] for _ in range(n_bins**dims)] for s in sources}
    for s in sources:
        for feature, c in sorted(coordinates[s].items()):
            members[s][stratum(c)].append(feature)
    capacity = [min(len(members[s][b]) for s in sources) for b in range(n_bins**dims)]
    take = _allocate(capacity, n_per_source)
    chosen: dict[int, list[int]] = {}
    for s in sources:
        rng = random.Random(f"{seed}:{s}")
        chosen[s] = sorted(f for b, k in enumerate(take) for f in rng.sample(members[s][b], k))
    strata = []
    for b, k in enumerate(take):
        cell = [b // n_bins ** (dims - 1 - d) % n_bins for d in range(dims)]
        strata.append(
            {
                "log10_frequency": [[round(edges[d][i], 3), round(edges[d][i + 1], 3)] for d, i in enumerate(cell)],
                "available": {str(s): len(members[s][b]) for s in sources},
                "taken": k,
            }
        )
    return MatchedSample(chosen=chosen, strata=strata)


def sampling_report(
    *,
    sampling: str,
    requested: Mapping[int, int],
    chosen: Mapping[int, Sequence[int]],
    log_freq: Mapping[int, Sequence[float]],
    strata: list[dict] | None = None,
) -> dict:
    """How well the sources match: per source, asked/contributed/missing and the drawn log frequencies'
    mean; the largest pairwise Kolmogorov-Smirnov distance (and its p-value) between sources."""
    from scipy.stats import ks_2samp

    per_source = []
    drawn = {s: [log_freq[s][f] for f in chosen[s]] for s in chosen}
    for s in sorted(chosen):
        values = drawn[s]
        per_source.append(
            {
                "source": s,
                "requested": requested[s],
                "contributed": len(chosen[s]),
                "could_not_contribute": requested[s] - len(chosen[s]),
                "mean_log10_frequency": round(sum(values) / len(values), 3) if values else None,
            }
        )
    ks = {"statistic": 0.0, "p_value": 1.0}
    keys = sorted(chosen)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if drawn[a] and drawn[b]:
                test = ks_2samp(drawn[a], drawn[b])
                if test.statistic > ks["statistic"]:
                    ks = {"statistic": round(float(test.statistic), 4), "p_value": float(f"{test.pvalue:.4g}")}
    return {"sampling": sampling, "per_source": per_source, "ks": ks, "strata": strata or []}
