"""`python manage.py bench ppi`: coverage and efficiency of the prediction-powered difference between two
sources, by simulation (numpy, vectorised over campaigns).

Each simulated campaign has two sources whose features have a latent quality (normal, source means 0.3
apart). Every feature gets `labellers` human scores on the 0-3 rubric (quality plus labeller noise, rounded
and clipped) whose mean is the feature's human score; `judge_only` features per source are scored only by
the judge, `n` by humans too. The judge's score correlates with the human score at ρ (its population
correlation, set exactly) and is biased differently per source, which PPI must correct. The truth is the
population difference of the human scores, computed from the normal distribution (no simulation error).

Intervals are the results page's (`small_sample`: ddof 1, Student t with Welch–Satterthwaite degrees of
freedom), the human-only one alike. Figures: `coverage`, the smallest share, over settings (ρ in `rhos` × n
in `human_items`), of 95% PPI intervals containing the truth (each setting also gives the human-only
interval's); `width_ratio_rho_0_9`, the median PPI width over the human-only width at
ρ = 0.9 and n = 50; `efficiency_gap`, the largest relative difference over settings between the measured
median width ratio and a power-tuned estimator's theory √(1 − ρ²·N/(N + n)); `rho_0_width_gap`, the largest
relative difference from the human-only width at ρ = 0.
"""

from __future__ import annotations

import time

import numpy as np

DEFAULTS: dict[str, object] = {
    "campaigns": 1000,
    "rhos": [0.0, 0.3, 0.6, 0.9],
    "human_items": [20, 50, 100, 200],
    "judge_only": 1000,
    "labellers": 2,
    "seed": 0,
}
TARGETS = {"coverage": 0.93, "width_ratio_rho_0_9": 0.55, "efficiency_gap": 0.05, "rho_0_width_gap": 0.05}
MEANS = {"a": 1.6, "b": 1.3}  # latent feature quality per source
JUDGE_BIAS = {"a": 0.0, "b": 0.3}  # the judge overrates source b
FEATURE_SD, LABELLER_SD = 0.8, 0.6
LEVEL = 0.95


def human_scores(rng: np.random.Generator, mean: float, shape: tuple[int, ...], labellers: int) -> np.ndarray:
    """Per feature, the mean of `labellers` rubric scores: round(quality + noise) clipped to 0..3."""
    quality = rng.normal(mean, FEATURE_SD, shape)[..., None]  # [..., features, 1]
    scores = np.clip(np.rint(quality + rng.normal(0.0, LABELLER_SD, (*shape, labellers))), 0, 3)
    return scores.mean(axis=-1)


def true_mean(mean: float) -> float:
    """E[human score]: a labeller's clipped, rounded score is Σ_j 1[x ≥ j − ½] for j = 1..3, x normal."""
    from scipy.stats import norm

    spread = np.hypot(FEATURE_SD, LABELLER_SD)
    return float(sum(norm.cdf((mean - (j - 0.5)) / spread) for j in (1, 2, 3)))


def _moments(rng: np.random.Generator, mean: float, labellers: int) -> tuple[float, float]:
    """Population mean and sd of the human score (2 million features), to give the judge an exact ρ."""
    sample = human_scores(rng, mean, (2_000_000,), labellers)
    return float(sample.mean()), float(sample.std())


def simulate(rho: float, n: int, params: dict, moments: dict, rng: np.random.Generator) -> dict:
    """One setting: `campaigns` campaigns; the PPI difference (a − b) and the human-only one per campaign."""
    from labelsite.statistics import interval_quantile, ppi_core, welch_dof

    campaigns, big_n = int(params["campaigns"]), int(params["judge_only"])
    estimate, human_estimate, variances, human_variances = 0.0, 0.0, [], []
    for sign, source in ((1, "a"), (-1, "b")):
        human = human_scores(rng, MEANS[source], (campaigns, n + big_n), int(params["labellers"]))
        centre, spread = moments[source]
        noise = rng.normal(0.0, 1.0, human.shape)
        judge = 1.2 + JUDGE_BIAS[source] + 0.9 * (rho * (human - centre) / spread + np.sqrt(1 - rho**2) * noise)
        est, var, _ = ppi_core(human[:, :n], judge[:, :n], judge[:, n:], small_sample=True)
        estimate = estimate + sign * est
        human_estimate = human_estimate + sign * human[:, :n].mean(axis=-1)
        variances.append(var)
        human_variances.append(np.var(human[:, :n], axis=-1, ddof=1) / n)
    truth = true_mean(MEANS["a"]) - true_mean(MEANS["b"])
    variance, human_variance = sum(variances), sum(human_variances)
    half = interval_quantile(LEVEL, welch_dof(variances, [n - 1, n - 1])) * np.sqrt(variance)
    human_half = interval_quantile(LEVEL, welch_dof(human_variances, [n - 1, n - 1])) * np.sqrt(human_variance)
    ratio = float(np.median(half / human_half))
    theory = float(np.sqrt(1 - rho**2 * big_n / (big_n + n)))
    return {
        "rho": rho,
        "human_items": n,
        "coverage": float(np.mean(np.abs(estimate - truth) <= half)),
        "human_only_coverage": float(np.mean(np.abs(human_estimate - truth) <= human_half)),
        "width_ratio": round(ratio, 4),
        "theory": round(theory, 4),
        "gap": round(abs(ratio - theory) / theory, 4),
    }


def run(**overrides) -> dict:
    params = {**DEFAULTS, **overrides}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    if int(params["campaigns"]) < 1 or int(params["judge_only"]) < 1:
        raise ValueError("campaigns and judge_only must be at least 1")
    started = time.perf_counter()
    rng = np.random.default_rng(int(params["seed"]))
    moments = {source: _moments(rng, mean, int(params["labellers"])) for source, mean in MEANS.items()}
    settings = [
        simulate(float(rho), int(n), params, moments, rng) for rho in params["rhos"] for n in params["human_items"]
    ]
    at_0_9 = [s for s in settings if s["rho"] == 0.9 and s["human_items"] == 50]
    at_0 = [abs(s["width_ratio"] - 1) for s in settings if s["rho"] == 0.0]
    figures = {
        "coverage": min(s["coverage"] for s in settings),
        "width_ratio_rho_0_9": at_0_9[0]["width_ratio"] if at_0_9 else None,
        "efficiency_gap": max(s["gap"] for s in settings),
        "rho_0_width_gap": round(max(at_0), 4) if at_0 else None,
    }
    met = {
        "coverage": figures["coverage"] >= TARGETS["coverage"],
        "width_ratio_rho_0_9": figures["width_ratio_rho_0_9"] is not None
        and figures["width_ratio_rho_0_9"] <= TARGETS["width_ratio_rho_0_9"],
        "efficiency_gap": figures["efficiency_gap"] <= TARGETS["efficiency_gap"],
        "rho_0_width_gap": figures["rho_0_width_gap"] is not None
        and figures["rho_0_width_gap"] <= TARGETS["rho_0_width_gap"],
    }
    return {
        **figures,
        "targets": TARGETS,
        "met": met,
        "settings": settings,
        "params": params,
        "seconds": round(time.perf_counter() - started, 2),
    }
