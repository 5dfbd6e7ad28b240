"""The statistics behind a campaign's results, as pure functions over arrays (numpy, scipy, scikit-learn,
krippendorff; no Django), so they can be tested on their own and reused from a notebook.

Judgments are not independent: one feature is judged by several labellers, and one labeller judges many
features. Every interval here therefore resamples *features* (and labellers, when there are at least two),
never single judgments. Data come in long format: one entry per judgment with the feature (unit) it is
about, the labeller (rater) who made it, and the value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

import numpy as np

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def _codes(labels: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct labels (sorted) and, per entry, the index of its label."""
    uniques, codes = np.unique(np.asarray(labels), return_inverse=True)
    return uniques, codes.reshape(-1)


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap percentile interval and what it was computed from."""

    mean: float | None
    low: float | None
    high: float | None
    n: int  # judgments
    n_units: int  # features
    n_raters: int  # labellers
    resampled: str  # "features" or "features and labellers"

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    units: Sequence | np.ndarray,
    raters: Sequence | np.ndarray | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Estimate:
    """Mean of `values` with a percentile interval from a cluster bootstrap.

    Each resample draws features with replacement; when `raters` names at least two labellers it also draws
    labellers with replacement, independently (the two-way "pigeonhole" bootstrap for crossed designs). A
    judgment then counts (times its feature was drawn) × (times its labeller was drawn). Computed from
    per-cell sums, so the cost is O(resamples × features × labellers), not O(resamples × judgments).
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return Estimate(None, None, None, 0, 0, 0, "features")
    _, unit_codes = _codes(units)
    n_units = int(unit_codes.max()) + 1
    rater_codes = np.zeros(n, dtype=int) if raters is None else _codes(raters)[1]
    n_raters = int(rater_codes.max()) + 1
    two_way = n_raters >= 2
    # sums[f, l] and counts[f, l]: the judgments of feature f by labeller l
    sums = np.zeros((n_units, n_raters))
    counts = np.zeros((n_units, n_raters))
    np.add.at(sums, (unit_codes, rater_codes), values)
    np.add.at(counts, (unit_codes, rater_codes), 1.0)
    rng = np.random.default_rng(seed)
    unit_w = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_resamples).astype(float)
    if two_way:
        rater_w = rng.multinomial(n_raters, np.full(n_raters, 1.0 / n_raters), size=n_resamples).astype(float)
        num = np.einsum("bl,bl->b", unit_w @ sums, rater_w)
        den = np.einsum("bl,bl->b", unit_w @ counts, rater_w)
    else:
        num = unit_w @ sums.sum(axis=1)
        den = unit_w @ counts.sum(axis=1)
    means = num[den > 0] / den[den > 0]
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha]) if len(means) else (None, None)
    return Estimate(
        mean=_round(values.mean()),
        low=_round(low),
        high=_round(high),
        n=n,
        n_units=n_units,
        n_raters=n_raters if raters is not None else 0,
        resampled="features and labellers" if two_way else "features",
    )


def distribution(values: Sequence[float] | np.ndarray, levels: Sequence[int]) -> dict[str, dict]:
    """Count and share of each rubric level (levels never chosen included, with 0)."""
    values = np.asarray(values)
    total = len(values)
    out = {}
    for level in levels:
        count = int(np.sum(values == level))
        out[str(level)] = {"count": count, "share": _round(count / total) if total else None}
    return out


def unit_means(values: Sequence[float] | np.ndarray, units: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, the mean of its judgments: (features, means). The independent observations of a source."""
    values = np.asarray(values, dtype=float)
    uniques, codes = _codes(units)
    sums = np.bincount(codes, weights=values, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques))
    return uniques, sums / counts


def cliffs_delta(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Cliff's delta P(x > y) − P(x < y), from the Mann–Whitney U statistic (ties count one half)."""
    from scipy.stats import mannwhitneyu

    n_x, n_y = np.shape(x)[axis], np.shape(y)[axis]
    u = mannwhitneyu(x, y, axis=axis, method="asymptotic").statistic
    return 2.0 * u / (n_x * n_y) - 1.0


@dataclass(frozen=True)
class Comparison:
    """Source A vs source B on one question, features as the unit."""

    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    difference: float | None  # mean_a − mean_b over feature means
    p_value: float | None  # two-sided permutation test of the difference
    cliffs_delta: float | None
    delta_low: float | None
    delta_high: float | None
    n_resamples: int

    def as_dict(self) -> dict:
        return asdict(self)


def compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Comparison:
    """Compare two sources given their per-feature mean scores (see `unit_means`).

    The p-value is a two-sided permutation test of the difference in means (source labels permuted across
    features); the effect size is Cliff's delta with a percentile bootstrap interval (features resampled
    within each source).
    """
    from scipy.stats import bootstrap, permutation_test

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return Comparison(len(a), len(b), _round(_mean(a)), _round(_mean(b)), None, None, None, None, None, 0)

    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    rng = np.random.default_rng(seed)
    test = permutation_test(
        (a, b),
        mean_difference,
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=rng,
    )
    delta = float(cliffs_delta(a, b))
    if np.all(a == a[0]) and np.all(b == b[0]):
        low = high = delta  # nothing varies: every resample gives the same delta
    else:
        interval = bootstrap(
            (a, b),
            cliffs_delta,
            vectorized=True,
            paired=False,
            n_resamples=n_resamples,
            batch=200,
            confidence_level=level,
            method="percentile",
            rng=rng,
        ).confidence_interval
        low, high = interval.low, interval.high
    return Comparison(
        n_a=len(a),
        n_b=len(b),
        mean_a=_round(a.mean()),
        mean_b=_round(b.mean()),
        difference=_round(a.mean() - b.mean()),
        p_value=_round(test.pvalue, 6),
        cliffs_delta=_round(delta),
        delta_low=_round(low),
        delta_high=_round(high),
        n_resamples=n_resamples,
    )


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def adjusted_means(
    values: Sequence[float] | np.ndarray, groups: Sequence | np.ndarray, raters: Sequence | np.ndarray
) -> dict:
    """Labeller-adjusted mean per group (source): least squares on value ~ group + labeller.

    Labeller effects are coded to sum to zero, so each group's coefficient is its mean as if every labeller
    had judged it equally often (the least-squares / marginal mean). A strict labeller who happened to judge
    more items of one source no longer drags that source down.
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return {}
    group_names, g = _codes(groups)
    _, r = _codes(raters)
    n_raters = int(r.max()) + 1
    design = np.zeros((len(values), len(group_names) + n_raters - 1))
    design[np.arange(len(values)), g] = 1.0
    for k in range(n_raters - 1):
        column = len(group_names) + k
        design[r == k, column] = 1.0
        design[r == n_raters - 1, column] = -1.0
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return {str(name): _round(coef[i]) for i, name in enumerate(group_names)}


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> dict:
    """Spearman's rank correlation (scipy) over the pairs where both are known."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    known = np.isfinite(x) & np.isfinite(y)
    n = int(known.sum())
    if n < 3 or np.all(x[known] == x[known][0]) or np.all(y[known] == y[known][0]):
        return {"rho": None, "p_value": None, "n": n}
    result = spearmanr(x[known], y[known])
    return {"rho": _round(result.statistic), "p_value": _round(result.pvalue, 6), "n": n}


def log_odds_ratio(freq_domain: np.ndarray | float, freq_general: np.ndarray | float, *, eps: float = 1e-6):
    """log(p_D / (1 − p_D)) − log(p_G / (1 − p_G)): how much more a feature fires on D than on general text.

    Frequencies are clipped to [eps, 1 − eps] so that a feature that never fires on one corpus gets a large
    finite value instead of ±inf.
    """
    d = np.clip(np.asarray(freq_domain, dtype=float), eps, 1 - eps)
    g = np.clip(np.asarray(freq_general, dtype=float), eps, 1 - eps)
    return np.log(d / (1 - d)) - np.log(g / (1 - g))


# --- agreement -------------------------------------------------------------------------------------


def rating_matrix(
    values: Sequence | np.ndarray, units: Sequence | np.ndarray, raters: Sequence | np.ndarray, domain: Sequence
) -> tuple[np.ndarray, list]:
    """Raters × units matrix of value *indices* into `domain` (nan where a rater did not judge a unit), and
    the raters in row order. Values outside the domain are an error (the caller validated them)."""
    index = {v: i for i, v in enumerate(domain)}
    rater_names, r = _codes(raters)
    _, u = _codes(units)
    matrix = np.full((len(rater_names), int(u.max()) + 1 if len(u) else 0), np.nan)
    matrix[r, u] = [index[v] for v in values]
    return matrix, [x.item() if hasattr(x, "item") else x for x in rater_names]


def _value_counts(matrix: np.ndarray, n_values: int) -> np.ndarray:
    """Units × values: how many raters gave each value to each unit (only units with ≥ 2 values matter)."""
    counts = np.zeros((matrix.shape[1], n_values))
    rows, cols = np.nonzero(np.isfinite(matrix))
    np.add.at(counts, (cols, matrix[rows, cols].astype(int)), 1.0)
    return counts[counts.sum(axis=1) >= 2]


def krippendorff_alpha(
    matrix: np.ndarray,
    *,
    n_values: int,
    level_of_measurement: str,
    n_resamples: int = 1000,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict:
    """Krippendorff's alpha (the `krippendorff` package) of a raters × units matrix of value indices, with a
    percentile interval from resampling units (features). `level_of_measurement`: "ordinal" for rubric
    scores, "nominal" for categories. Value indices stand for an ordered domain, so ordinal distances are
    those of the rubric's order."""
    import krippendorff

    counts = _value_counts(matrix, n_values)
    out = {"alpha": None, "low": None, "high": None, "units": len(counts), "level_of_measurement": level_of_measurement}
    if len(counts) < 2 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return out  # nothing pairable, or every pairable value identical: alpha is undefined
    domain = np.arange(n_values)

    def alpha_of(c: np.ndarray) -> float:
        return float(krippendorff.alpha(value_counts=c, value_domain=domain, level_of_measurement=level_of_measurement))

    out["alpha"] = _round(alpha_of(counts))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        sample = counts[rng.integers(0, len(counts), len(counts))]
        if np.count_nonzero(sample.sum(axis=0)) >= 2:
            draws.append(alpha_of(sample))
    if draws:
        tail = (1 - level) / 2
        out["low"], out["high"] = (_round(q) for q in np.quantile(draws, [tail, 1 - tail]))
    return out


def pairwise_agreement(matrix: np.ndarray, raters: Sequence, *, n_values: int, weights: str | None) -> list[dict]:
    """Per pair of raters who share items: shared items, percent agreement (exact) and Cohen's kappa
    (scikit-learn; `weights` "linear"/"quadratic" for ordinal scores, None for categories)."""
    from sklearn.metrics import cohen_kappa_score

    known = np.isfinite(matrix)
    labels = list(range(n_values))
    out = []
    for i, j in combinations(range(len(raters)), 2):
        shared = known[i] & known[j]
        n = int(shared.sum())
        if n == 0:
            continue
        a, b = matrix[i, shared].astype(int), matrix[j, shared].astype(int)
        kappa = None
        if len(set(a.tolist()) | set(b.tolist())) >= 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                kappa = _round(cohen_kappa_score(a, b, labels=labels, weights=weights))
        out.append(
            {
                "a": raters[i],
                "b": raters[j],
                "shared": n,
                "percent_agreement": _round(100.0 * float(np.mean(a == b)), 2),
                "kappa": kappa,
            }
        )
    return out


MIN_ALPHA_PAIRS = 5  # fewer (first, repeat) pairs than this give no meaningful alpha


def self_agreement(
    first: Sequence, repeat: Sequence, *, levels: Sequence[int] | None = None, n_resamples: int = 200, seed: int = 0
) -> dict:
    """How consistently one labeller (or a group) answered the same features twice: `first[i]` and `repeat[i]`
    are the two answers to feature i. The share of identical answers; for rubric scores (`levels`, ordered)
    also the mean absolute difference and, from MIN_ALPHA_PAIRS pairs, Krippendorff's ordinal alpha with the
    pairs as units and (first, repeat) as the two ratings (`krippendorff_alpha`)."""
    n = len(first)
    same = [a == b for a, b in zip(first, repeat, strict=True)]
    out: dict = {"pairs": n, "identical": _round(float(np.mean(same))) if n else None}
    if levels is None:
        return out
    a, b = np.asarray(first, dtype=float), np.asarray(repeat, dtype=float)
    out["mean_abs_diff"] = _round(float(np.mean(np.abs(a - b)))) if n else None
    out["alpha"] = None
    if n >= MIN_ALPHA_PAIRS:
        index = {level: i for i, level in enumerate(levels)}
        matrix = np.array([[index[int(v)] for v in first], [index[int(v)] for v in repeat]], dtype=float)
        out["alpha"] = krippendorff_alpha(
            matrix, n_values=len(levels), level_of_measurement="ordinal", n_resamples=n_resamples, seed=seed
        )
    return out


# --- blinding indices: whether labellers could tell the sources apart, from their own guesses -----------------
# `counts` is a (k + 1) x k table: row i < k counts guesses "source i", the last row "don't know"; column j is the
# source the item really came from (k >= 2 sources, as arms of a trial).

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def _interval(estimate: float, se: float) -> dict:
    return {
        "estimate": _round(estimate),
        "se": _round(se),
        "ci_low": _round(estimate - Z95 * se),
        "ci_high": _round(estimate + Z95 * se),
    }


def _guess_table(counts) -> np.ndarray:
    table = np.asarray(counts, dtype=np.float64)
    k = table.shape[1]
    if table.shape != (k + 1, k) or k < 2:
        raise ValueError("A guess table has k >= 2 columns (sources) and k + 1 rows (guesses, then don't know).")
    return table


def bang_index(counts) -> list[dict | None]:
    """Bang's blinding index per source (Bang, Ni & Davis 2004), with its 95% interval; None for a source nobody
    guessed on.

    For source j with n_j judged items, of which c were guessed right and w guessed as another source (the rest
    "don't know"): BI_j = c / n_j - w / ((k - 1) n_j). With two sources this is Bang's (2 p_correct|guessed - 1)
    x p_guessed = (c - w) / n_j; the 1 / (k - 1) keeps 0 at random guessing among k sources. 1: all guessed
    right; -1 (two sources): all guessed wrong; within [-0.2, 0.2] blinding is usually deemed successful.
    Its variance is the multinomial variance of p_c - p_w / (k - 1):
    [p_c (1 - p_c) + p_w (1 - p_w) / (k - 1)^2 + 2 p_c p_w / (k - 1)] / n_j (Bang's, for k = 2).
    """
    table = _guess_table(counts)
    k = table.shape[1]
    m = k - 1
    out: list[dict | None] = []
    for j in range(k):
        n = table[:, j].sum()
        if n == 0:
            out.append(None)
            continue
        p_c = table[j, j] / n
        p_w = (table[:k, j].sum() - table[j, j]) / n
        var = (p_c * (1 - p_c) + p_w * (1 - p_w) / m**2 + 2 * p_c * p_w / m) / n
        out.append({**_interval(p_c - p_w / m, math.sqrt(max(var, 0.0))), "n": int(n)})
    return out


def james_index(counts) -> dict | None:
    """James' blinding index over all sources (James, Bloch, Lee, Kraemer & Fuller 1996), with its 95% interval.

    A weighted kappa of disagreement between guess and truth, with "don't know" counted as fully blind: cell
    weights 0 for a right guess, 0.5 for a wrong one. With P the table's proportions, P_dk the share of "don't
    know", r_i the share guessing source i and q_j the share of source j among those who guessed:
    P_o = sum w_ij P_ij / (1 - P_dk), P_e = sum w_ij r_i q_j / (1 - P_dk)^2, K_d = (P_o - P_e) / P_e and
    BI = (1 + P_dk + (1 - P_dk) K_d) / 2: 1 complete blinding, 0.5 random guessing, 0 complete unblinding
    (unblinding is claimed when the interval's upper end is below 0.5). Its variance is James' (1996, eq. in
    the appendix, as implemented by the R package BI). Everyone answering "don't know": 1 with no error;
    None when undefined (nobody guessed, or P_e = 0).
    """
    table = _guess_table(counts)
    k = table.shape[1]
    total = table.sum()
    if total == 0:
        return None
    p = table / total
    p_dk = p[k].sum()
    if not table[:k].any():
        return {**_interval(1.0, 0.0), "n": int(total)}
    weights = 0.5 * (1 - np.eye(k))  # [guess i, truth j]
    guessed = p[:k]  # [guess i, truth j]
    r = guessed.sum(axis=1)  # [guess i]
    q = guessed.sum(axis=0)  # [truth j]: among those who guessed
    expected = float((weights * np.outer(r, q)).sum())
    if expected == 0:
        return None
    p_o = float((weights * guessed).sum()) / (1 - p_dk)
    p_e = expected / (1 - p_dk) ** 2
    kappa = (p_o - p_e) / p_e
    estimate = (1 + p_dk + (1 - p_dk) * kappa) / 2
    extra = (weights * r[:, None]).sum(axis=0)[None, :] + (weights * q[None, :]).sum(axis=1)[:, None]  # [i, j]
    term1 = float((guessed * (1 - p_dk) ** 2 * ((1 - p_dk) * weights - (1 + kappa) * extra) ** 2).sum())
    term1 /= 4 * expected**2
    term2 = p_dk * (1 - p_dk) - (1 - p_dk) * (1 + kappa) * (p_dk + (1 - p_dk) * (1 + kappa) / 4)
    var = (term1 + term2) / total
    return {**_interval(estimate, math.sqrt(max(var, 0.0))), "n": int(total)}
