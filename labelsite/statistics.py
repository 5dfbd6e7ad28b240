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
# Fewer features than this behind a correlation, a comparison or an agreement: the figure is computed but
# withheld on the page (flagged `below_minimum` in the data), since a handful of points gives ρ = ±1 or p
# values that mean nothing.
MIN_FEATURES = 5


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


# --- prediction-powered inference ------------------------------------------------------------------
#
# A judge (a model) scores every feature; humans score a random subset. PPI++ (Angelopoulos, Duchi & Zrnic,
# "PPI++: Efficient Prediction-Powered Inference", 2023) estimates the humans' mean as
#     θ̂(λ) = λ·mean(judge on the features humans did not see) + mean(human − λ·judge on the features they did),
# which is unbiased for every λ, and picks the λ that minimises its plug-in variance (power tuning), clipped
# to [0, 1]: a judge that predicts the humans well earns a λ near 1 and a narrow interval; a judge that does
# not earns λ ≈ 0, and the interval falls back to the humans' own. With `small_sample=False` the formulas
# (variances with ddof 0, a normal quantile, the λ estimate's covariances) are those of ppi-python's
# `ppi_mean_ci`, which the tests check against. The results use `small_sample=True`: variances with ddof 1
# and a Student t quantile (n − 1 degrees of freedom; Welch–Satterthwaite for a difference), for the human-only
# interval too; with 20 human items per source the normal interval covers about 92% instead of 95%.


@dataclass(frozen=True)
class PPIEstimate:
    """A prediction-powered mean (or difference of means) with its interval, beside the human-only one."""

    mean: float | None  # prediction-powered estimate
    low: float | None
    high: float | None
    se: float | None
    lam: float | None  # the tuned weight on the judge (per source; None for a difference)
    human_mean: float | None  # the human items alone, with their interval
    human_low: float | None
    human_high: float | None
    judge_mean: float | None  # the judge alone, over every feature it scored
    n: int  # human-scored features
    n_judge_only: int  # features only the judge scored
    effective_n: float | None  # human-scored features a human-only estimate would need for the same variance

    def as_dict(self) -> dict:
        return {k: (_round(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def welch_dof(variances: Sequence, dofs: Sequence) -> np.ndarray:
    """Welch–Satterthwaite degrees of freedom of a sum of independent variance estimates (inf stays inf)."""
    total = sum(variances)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = sum(np.asarray(v) ** 2 / d for v, d in zip(variances, dofs, strict=True))
        return np.where(spread > 0, total**2 / spread, np.inf)


def interval_quantile(level: float, dof: float | np.ndarray = np.inf) -> np.ndarray:
    """q such that ± q·se has coverage `level` (two-sided): Student t with `dof` degrees of freedom, normal at inf."""
    from scipy.stats import t

    return t.ppf(1 - (1 - level) / 2, dof)


@dataclass(frozen=True)
class _PPIParts:
    """Unrounded pieces of a PPI estimate; two sources' pieces subtract into their difference's."""

    estimate: float
    variance: float
    lam: float | None
    human_mean: float
    human_variance: float
    judge_mean: float
    n: int
    n_judge_only: int
    dof: float  # of both variances: n − 1, or inf for the normal interval
    human_dof: float

    def __sub__(self, other: _PPIParts) -> _PPIParts:
        # independent samples: means subtract, variances add
        return _PPIParts(
            estimate=self.estimate - other.estimate,
            variance=self.variance + other.variance,
            lam=None,
            human_mean=self.human_mean - other.human_mean,
            human_variance=self.human_variance + other.human_variance,
            judge_mean=self.judge_mean - other.judge_mean,
            n=self.n + other.n,
            n_judge_only=self.n_judge_only + other.n_judge_only,
            dof=float(welch_dof([self.variance, other.variance], [self.dof, other.dof])),
            human_dof=float(welch_dof([self.human_variance, other.human_variance], [self.human_dof, other.human_dof])),
        )

    def result(self, level: float) -> PPIEstimate:
        q, human_q = float(interval_quantile(level, self.dof)), float(interval_quantile(level, self.human_dof))
        se, human_se = math.sqrt(self.variance), math.sqrt(self.human_variance)
        return PPIEstimate(
            mean=self.estimate,
            low=self.estimate - q * se,
            high=self.estimate + q * se,
            se=se,
            lam=self.lam,
            human_mean=self.human_mean,
            human_low=self.human_mean - human_q * human_se,
            human_high=self.human_mean + human_q * human_se,
            judge_mean=self.judge_mean,
            n=self.n,
            n_judge_only=self.n_judge_only,
            effective_n=self.n * self.human_variance / self.variance if self.variance > 0 else None,
        )


def ppi_lambda(human: np.ndarray, judge: np.ndarray, judge_only: np.ndarray) -> np.ndarray:
    """The power-tuned weight λ̂ = Cov(human, judge) / ((1 + n/N)·Var(judge over all features)), in [0, 1],
    along the last axis (leading axes are separate campaigns). Zero where the judge gave every feature the
    same score (it carries no information)."""
    n, n_unlabelled = human.shape[-1], judge_only.shape[-1]
    covariance = np.mean(  # ddof 0, as ppi-python
        (human - human.mean(axis=-1, keepdims=True)) * (judge - judge.mean(axis=-1, keepdims=True)), axis=-1
    )
    variance = np.var(np.concatenate([judge, judge_only], axis=-1), axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = covariance / ((1 + n / n_unlabelled) * variance)
    return np.where(variance > 0, np.clip(lam, 0.0, 1.0), 0.0)


def ppi_core(
    human: np.ndarray,
    judge: np.ndarray,
    judge_only: np.ndarray,
    lam: float | np.ndarray | None = None,
    *,
    small_sample: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, variance, λ) of the PPI++ mean along the last axis, vectorised over leading axes (one
    simulated campaign each): θ̂ = λ·mean(judge_only) + mean(human − λ·judge), Var = Var(λ·judge_only)/N +
    Var(human − λ·judge)/n (ddof 0, or 1 with `small_sample`)."""
    if lam is None:
        lam = ppi_lambda(human, judge, judge_only)
    lam = np.asarray(lam, dtype=float)
    weighted, ddof = lam[..., None], int(small_sample)
    estimate = lam * judge_only.mean(axis=-1) + np.mean(human - weighted * judge, axis=-1)
    variance = (
        np.var(weighted * judge_only, axis=-1, ddof=ddof) / judge_only.shape[-1]
        + np.var(human - weighted * judge, axis=-1, ddof=ddof) / human.shape[-1]
    )
    return estimate, variance, lam


def _ppi_parts(human, judge, judge_only, *, lam: float | None, small_sample: bool) -> _PPIParts | None:
    human, judge = np.asarray(human, dtype=float), np.asarray(judge, dtype=float)
    judge_only = np.asarray(judge_only, dtype=float)
    if len(human) != len(judge):
        raise ValueError("Every human-scored feature needs the judge's score too.")
    n, n_unlabelled = len(human), len(judge_only)
    if n < 2 or n_unlabelled < 2:
        return None
    estimate, variance, lam = ppi_core(human, judge, judge_only, lam, small_sample=small_sample)
    dof = n - 1.0 if small_sample else math.inf
    return _PPIParts(
        estimate=float(estimate),
        variance=float(variance),
        lam=float(lam),
        human_mean=float(human.mean()),
        human_variance=float(np.var(human, ddof=int(small_sample)) / n),
        judge_mean=float(np.concatenate([judge, judge_only]).mean()),
        n=n,
        n_judge_only=n_unlabelled,
        dof=dof,
        human_dof=dof,
    )


def _no_ppi(n: int, n_judge_only: int) -> PPIEstimate:
    return PPIEstimate(None, None, None, None, None, None, None, None, None, n, n_judge_only, None)


def ppi_mean(
    human: Sequence[float] | np.ndarray,
    judge: Sequence[float] | np.ndarray,
    judge_only: Sequence[float] | np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    lam: float | None = None,
    small_sample: bool = False,
) -> PPIEstimate:
    """The PPI++ mean of the human score. `human[i]` and `judge[i]` are the humans' (mean) score and the judge's
    score of the i-th human-scored feature; `judge_only` the judge's scores of the features no human scored
    (drawn from the same population). `lam` None tunes the weight; 0 gives the human-only estimate, 1 plain
    PPI. Needs 2 human-scored and 2 judge-only features; fewer give an estimate of None fields."""
    parts = _ppi_parts(human, judge, judge_only, lam=lam, small_sample=small_sample)
    return parts.result(level) if parts is not None else _no_ppi(len(human), len(judge_only))


def ppi_difference(
    a: tuple[Sequence[float], Sequence[float], Sequence[float]],
    b: tuple[Sequence[float], Sequence[float], Sequence[float]],
    *,
    level: float = DEFAULT_LEVEL,
    small_sample: bool = False,
) -> PPIEstimate:
    """The PPI++ difference of means between two sources, A − B, each given as (human, judge, judge_only) as
    for `ppi_mean`. The sources' features are independent samples, so the variances add and each source's
    own tuned λ minimises the difference's variance too. `effective_n` counts human-scored features of both."""
    pa = _ppi_parts(*a, lam=None, small_sample=small_sample)
    pb = _ppi_parts(*b, lam=None, small_sample=small_sample)
    if pa is None or pb is None:
        return _no_ppi(len(a[0]) + len(b[0]), len(a[2]) + len(b[2]))
    return (pa - pb).result(level)


def ppi_width_ratio(rho: float | np.ndarray, n: int | np.ndarray, n_judge_only: int | np.ndarray):
    """Theory for a power-tuned estimator: its interval's width over the human-only one, √(1 − ρ²·N/(N + n)),
    with ρ the judge–human correlation, n human-scored and N judge-only features."""
    rho, n, big_n = (np.asarray(x, dtype=float) for x in (rho, n, n_judge_only))
    return np.sqrt(1.0 - rho**2 * big_n / (big_n + n))


def judge_agreement(judge: Sequence[float] | np.ndarray, human: Sequence[float] | np.ndarray) -> dict:
    """How well the judge's scores agree with the humans' mean scores on the features both scored: Spearman's
    rho (`spearman`) and Krippendorff's alpha at the interval level with judge and human mean as two raters."""
    import krippendorff

    judge, human = np.asarray(judge, dtype=float), np.asarray(human, dtype=float)
    out = {"spearman": spearman(judge, human), "alpha": None}
    both = np.vstack([judge, human])
    if len(judge) >= 2 and len(np.unique(both)) >= 2:
        out["alpha"] = _round(float(krippendorff.alpha(reliability_data=both, level_of_measurement="interval")))
    return out


# --- planning a campaign ---------------------------------------------------------------------------


def variance_components(values: Sequence[float] | np.ndarray, units: Sequence | np.ndarray) -> dict:
    """From a pilot's judgments of one score question: the spread of features' true scores (`feature_sd`), of one
    labeller's score around its feature's (`labeller_sd`, from features with ≥ 2 judgments) and the mean
    labellers per feature, by the one-way random-effects method of moments (clipped at 0)."""
    values = np.asarray(values, dtype=float)
    uniques, codes = _codes(units)
    counts = np.bincount(codes, minlength=len(uniques)).astype(float)
    means = np.bincount(codes, weights=values, minlength=len(uniques)) / np.maximum(counts, 1)
    within_ss = float(np.sum((values - means[codes]) ** 2))
    within_df = float(np.sum(counts - 1))
    labeller_var = within_ss / within_df if within_df > 0 else 0.0
    between_var = float(np.var(means, ddof=1)) if len(means) > 1 else 0.0
    feature_var = max(0.0, between_var - labeller_var * float(np.mean(1 / np.maximum(counts, 1))))
    return {
        "feature_sd": math.sqrt(feature_var),
        "labeller_sd": math.sqrt(labeller_var),
        "labellers_per_feature": float(counts.mean()) if len(counts) else 0.0,
        "features": len(uniques),
    }


def _reliability(feature_sd: float, labeller_sd: float, labellers: float) -> float:
    """Share of a human mean score's variance that is the feature's (not the labellers' noise)."""
    total = feature_sd**2 + labeller_sd**2 / labellers
    return feature_sd**2 / total if total > 0 else 0.0


def plan_width(
    *,
    feature_sd: float,
    labeller_sd: float,
    rho: float,
    rho_labellers: float,
    items: int | np.ndarray,
    labellers: int,
    judge_only: int,
    level: float = DEFAULT_LEVEL,
) -> dict:
    """Expected 95% interval widths of the difference between two sources with `items` human-scored features per
    source, `labellers` per feature and `judge_only` features per source scored by the judge alone: human-only
    and prediction-powered (power-tuned: the variance shrinks by ρ²·N/(N + n)). `rho` is the judge's correlation
    with human mean scores of `rho_labellers` labellers; with more labellers per feature the human mean is less
    noisy and the judge correlates better with it (ρ scales with the square root of the reliability)."""
    true_rho = min(1.0, abs(rho) / math.sqrt(max(_reliability(feature_sd, labeller_sd, rho_labellers), 1e-12)))
    rho_here = true_rho * math.sqrt(_reliability(feature_sd, labeller_sd, labellers))
    items = np.asarray(items, dtype=float)
    human_var = 2 * (feature_sd**2 + labeller_sd**2 / labellers) / items  # two sources
    shrink = 1 - rho_here**2 * judge_only / (judge_only + items)
    z = float(interval_quantile(level))
    return {
        "rho": rho_here,
        "human_only_width": 2 * z * np.sqrt(human_var),
        "ppi_width": 2 * z * np.sqrt(human_var * shrink),
        "effective_items": items / shrink,
    }


def plan_campaign(
    *,
    feature_sd: float,
    labeller_sd: float,
    rho: float,
    rho_labellers: float,
    items: int,
    labellers: int,
    judge_only: int,
    target_width: float | None = None,
    max_items: int = 100_000,
    level: float = DEFAULT_LEVEL,
) -> dict:
    """The planner: the widths at the given design, and for a `target_width` the fewest human-scored features per
    source reaching it with 1 to 5 labellers per feature (None when `max_items` do not), with and without the judge."""
    common = dict(feature_sd=feature_sd, labeller_sd=labeller_sd, rho=rho, rho_labellers=rho_labellers)
    here = plan_width(**common, items=items, labellers=labellers, judge_only=judge_only, level=level)
    out = {
        "design": {"items_per_source": items, "labellers_per_item": labellers, "judge_only_per_source": judge_only},
        "inputs": {**common, "level": level},
        "rho_at_design": round(here["rho"], 4),
        "human_only_width": round(float(here["human_only_width"]), 4),
        "ppi_width": round(float(here["ppi_width"]), 4),
        "effective_items_per_source": round(float(here["effective_items"]), 1),
        "target_width": target_width,
        "needed": [],
    }
    if target_width is None:
        return out
    grid = np.arange(2, max_items + 1)
    for k in range(1, 6):
        widths = plan_width(**common, items=grid, labellers=k, judge_only=judge_only, level=level)
        row = {"labellers_per_item": k}
        for name in ("ppi", "human_only"):
            ok = np.nonzero(widths[f"{name}_width"] <= target_width)[0]
            n = int(grid[ok[0]]) if len(ok) else None
            row[f"{name}_items_per_source"] = n
            row[f"{name}_judgments_per_source"] = n * k if n is not None else None
        out["needed"].append(row)
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
