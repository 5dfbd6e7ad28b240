"""Prediction-powered means and differences against ppi-python, the paper's formulas and brute force."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from scipy.stats import norm, spearmanr

from labelsite import statistics as st

# Fixed data: per-feature human mean scores (three labellers on the 0-3 rubric), the judge's score of those
# features, and the judge's scores of features no human saw.
HUMAN = [5 / 3, 5 / 3, 4 / 3, 2 / 3, 1.0, 2 / 3, 5 / 3, 8 / 3, 1.0, 1.0, 2.0, 5 / 3]
JUDGE = [2.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 1.0, 2.0]
JUDGE_ONLY = [2.0, 1.0, 0.0, 1.0, 1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
HUMAN_B = [1.0, 2.0, 2.0, 0.5, 1.0, 0.5, 1.5, 1.0, 1.5, 0.0]
JUDGE_B = [2.0, 2.0, 3.0, 1.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.0]
JUDGE_ONLY_B = [0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0]

# What ppi-python 0.2.3 returns on these data (`ppi_mean_pointestimate` and `ppi_mean_ci(..., alpha=0.05)`,
# power-tuned, and `classical_mean_ci`). The package is not a dependency: it pulls in numba, llvmlite and
# statsmodels (~270 MB) for these few lines of arithmetic, so its answers were recorded once.
PPI_PY = {
    "a": (1.4640790343915344, 1.190595171545849, 1.73756289723722),
    "a_lam1": (1.1160956563315376, 1.9839043436684625),
    "a_reversed": (1.4166666666666667, 1.0980445795158382, 1.7352887538174953),
    "a_classical": (1.0980445795158382, 1.7352887538174953),
    "b": (0.893179723502304, 0.572543237565062, 1.2138162094395462),
}


def test_ppi_mean_equals_ppi_python_on_fixed_data():
    est = st.ppi_mean(HUMAN, JUDGE, JUDGE_ONLY)
    mean, low, high = PPI_PY["a"]
    assert est.mean == pytest.approx(mean, abs=1e-9)
    assert est.low == pytest.approx(low, abs=1e-9)
    assert est.high == pytest.approx(high, abs=1e-9)
    assert (est.human_low, est.human_high) == pytest.approx(PPI_PY["a_classical"], abs=1e-9)
    untuned = st.ppi_mean(HUMAN, JUDGE, JUDGE_ONLY, lam=1.0)
    assert (untuned.low, untuned.high) == pytest.approx(PPI_PY["a_lam1"], abs=1e-9)
    b = st.ppi_mean(HUMAN_B, JUDGE_B, JUDGE_ONLY_B)
    assert (b.mean, b.low, b.high) == pytest.approx(PPI_PY["b"], abs=1e-9)


def test_a_judge_that_gets_it_backwards_gets_no_weight_and_the_human_interval():
    reversed_judge = [3 - j for j in JUDGE]
    est = st.ppi_mean(HUMAN, reversed_judge, JUDGE_ONLY)
    assert est.lam == 0.0
    assert (est.mean, est.low, est.high) == pytest.approx(PPI_PY["a_reversed"], abs=1e-9)
    assert (est.low, est.high) == pytest.approx((est.human_low, est.human_high), abs=1e-12)
    assert est.effective_n == pytest.approx(len(HUMAN))


def test_ppi_difference_combines_the_sources_ppi_python_intervals():
    diff = st.ppi_difference((HUMAN, JUDGE, JUDGE_ONLY), (HUMAN_B, JUDGE_B, JUDGE_ONLY_B))
    z = norm.ppf(0.975)
    (mean_a, low_a, high_a), (mean_b, low_b, high_b) = PPI_PY["a"], PPI_PY["b"]
    se = np.hypot((high_a - low_a) / (2 * z), (high_b - low_b) / (2 * z))
    assert diff.mean == pytest.approx(mean_a - mean_b, abs=1e-9)
    assert diff.low == pytest.approx(mean_a - mean_b - z * se, abs=1e-9)
    assert diff.high == pytest.approx(mean_a - mean_b + z * se, abs=1e-9)
    assert diff.human_mean == pytest.approx(np.mean(HUMAN) - np.mean(HUMAN_B), abs=1e-12)
    assert diff.n == 22 and diff.n_judge_only == 35


def test_the_tuned_weight_minimises_the_estimated_variance():
    # Brute force over a grid of weights: the paper's plug-in variance (with the labelled features' judge
    # variance estimated from all features, as the tuning does) is smallest at the tuned weight.
    rng = np.random.default_rng(5)
    human = rng.normal(1.5, 0.7, 40)
    judge = 0.8 * human + rng.normal(0, 0.5, 40)
    judge_only = 0.8 * rng.normal(1.5, 0.7, 300) + rng.normal(0, 0.5, 300)
    n, big_n = len(human), len(judge_only)
    var_judge = np.var(np.concatenate([judge, judge_only]), ddof=1)
    cov = np.cov(human, judge, ddof=0)[0, 1]

    def variance(lam: float) -> float:
        return lam**2 * var_judge / big_n + (np.var(human) - 2 * lam * cov + lam**2 * var_judge) / n

    grid = np.linspace(0, 1, 100_001)
    best = grid[np.argmin([variance(g) for g in grid])]
    assert st.ppi_lambda(human, judge, judge_only) == pytest.approx(best, abs=1e-4)
    assert 0.3 < best < 1.0


def test_ppi_interval_covers_the_truth_and_is_narrower_with_a_good_judge():
    rng = np.random.default_rng(9)
    truth, covered, ratios = 1.5, 0, []
    for _ in range(400):
        latent = rng.normal(truth, 0.8, 1050)
        human = latent[:50] + rng.normal(0, 0.3, 50)
        judge = latent + rng.normal(0, 0.3, 1050)
        est = st.ppi_mean(human, judge[:50], judge[50:])
        covered += est.low <= truth <= est.high
        ratios.append((est.high - est.low) / (est.human_high - est.human_low))
    assert covered / 400 >= 0.92
    rho = 0.8**2 / (0.8**2 + 0.3**2)  # corr(latent + e1, latent + e2)
    assert np.median(ratios) == pytest.approx(st.ppi_width_ratio(rho, 50, 1000), rel=0.05)


def test_too_few_features_give_no_estimate():
    est = st.ppi_mean([1.0], [1.0], [2.0, 1.0])
    assert est.mean is None and est.low is None and est.n == 1
    assert st.ppi_mean([1.0, 2.0], [1.0, 2.0], []).mean is None
    with pytest.raises(ValueError, match="judge's score"):
        st.ppi_mean([1.0, 2.0], [1.0], [1.0])


def test_width_ratio_theory_hand_values():
    assert st.ppi_width_ratio(0.0, 50, 1000) == pytest.approx(1.0)
    assert st.ppi_width_ratio(0.9, 50, 1000) == pytest.approx(np.sqrt(1 - 0.81 * 1000 / 1050))
    assert st.ppi_width_ratio(1.0, 0, 1000) == pytest.approx(0.0)


def test_judge_agreement_against_scipy_and_krippendorff():
    out = st.judge_agreement(JUDGE, HUMAN)
    assert out["spearman"]["rho"] == pytest.approx(spearmanr(JUDGE, HUMAN).statistic, abs=1e-4)
    reference = krippendorff.alpha(reliability_data=[JUDGE, HUMAN], level_of_measurement="interval")
    assert out["alpha"] == pytest.approx(reference, abs=1e-4)
    # interval alpha by hand for two raters: 1 - D_o / D_e over all 2n values
    values = np.concatenate([JUDGE, HUMAN])
    n_pairable = len(values)
    d_o = np.mean((np.array(JUDGE) - np.array(HUMAN)) ** 2)
    d_e = np.sum((values[:, None] - values[None, :]) ** 2) / (n_pairable * (n_pairable - 1))
    assert out["alpha"] == pytest.approx(1 - d_o / d_e, abs=1e-4)


def test_small_sample_intervals_are_scipys_t_and_welch_intervals_when_the_judge_gets_no_weight():
    from scipy.stats import sem, t, ttest_ind

    reversed_a, reversed_b = [3 - j for j in JUDGE], [3 - j for j in JUDGE_B]
    est = st.ppi_mean(HUMAN, reversed_a, JUDGE_ONLY, small_sample=True)
    low, high = t.interval(0.95, len(HUMAN) - 1, loc=np.mean(HUMAN), scale=sem(HUMAN))
    assert est.lam == 0.0
    assert (est.low, est.high) == pytest.approx((low, high), abs=1e-9)
    assert (est.human_low, est.human_high) == pytest.approx((low, high), abs=1e-9)
    diff = st.ppi_difference((HUMAN, reversed_a, JUDGE_ONLY), (HUMAN_B, reversed_b, JUDGE_ONLY_B), small_sample=True)
    welch = ttest_ind(HUMAN, HUMAN_B, equal_var=False).confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((welch.low, welch.high), abs=1e-9)
    assert (diff.human_low, diff.human_high) == pytest.approx((welch.low, welch.high), abs=1e-9)


def test_variance_components_hand_values():
    out = st.variance_components([0, 1, 2, 3, 3, 3], [0, 0, 1, 1, 2, 2])
    # within-feature: (0.25 * 4) / 3 judgments' degrees of freedom; between: var(0.5, 2.5, 3) - within / 2
    assert out["labeller_sd"] == pytest.approx(np.sqrt(1 / 3))
    assert out["feature_sd"] == pytest.approx(np.sqrt(1.75 - 1 / 6))
    assert out["labellers_per_feature"] == 2 and out["features"] == 3


def test_variance_components_recover_a_simulated_pilot():
    rng = np.random.default_rng(2)
    features = rng.normal(1.5, 0.8, 4000)
    units = np.repeat(np.arange(4000), 3)
    values = features[units] + rng.normal(0, 0.6, len(units))
    out = st.variance_components(values, units)
    assert out["feature_sd"] == pytest.approx(0.8, rel=0.04)
    assert out["labeller_sd"] == pytest.approx(0.6, rel=0.03)


def _simulated_widths(rng, *, n, k, big_n, feature_sd, labeller_sd, true_rho, campaigns=300):
    """Median widths of the human-only and PPI differences over simulated two-source campaigns."""
    ppi, human = [], []
    for _ in range(campaigns):
        samples = []
        for shift in (0.0, 0.4):
            truth = rng.normal(1.5 + shift, feature_sd, n + big_n)
            y = truth[:n] + rng.normal(0, labeller_sd, (k, n)).mean(axis=0)
            judge = true_rho * (truth - 1.5) / feature_sd + np.sqrt(1 - true_rho**2) * rng.normal(0, 1, n + big_n)
            samples.append((y, judge[:n], judge[n:]))
        diff = st.ppi_difference(*samples)
        ppi.append(diff.high - diff.low)
        human.append(diff.human_high - diff.human_low)
    return float(np.median(ppi)), float(np.median(human))


def test_planned_widths_match_simulated_campaigns():
    rng = np.random.default_rng(4)
    feature_sd, labeller_sd, true_rho = 0.8, 0.6, 0.9
    # the judge's correlation as a pilot with 2 labellers per feature would measure it
    stated = true_rho * np.sqrt(feature_sd**2 / (feature_sd**2 + labeller_sd**2 / 2))
    for n, k in ((50, 2), (100, 1)):
        plan = st.plan_width(
            feature_sd=feature_sd, labeller_sd=labeller_sd, rho=stated, rho_labellers=2, items=n, labellers=k,
            judge_only=1000,
        )  # fmt: skip
        ppi, human = _simulated_widths(
            rng, n=n, k=k, big_n=1000, feature_sd=feature_sd, labeller_sd=labeller_sd, true_rho=true_rho
        )
        assert float(plan["ppi_width"]) == pytest.approx(ppi, rel=0.05)
        assert float(plan["human_only_width"]) == pytest.approx(human, rel=0.05)


def test_planner_needs_the_fewest_items_reaching_the_target():
    inputs = dict(feature_sd=0.8, labeller_sd=0.6, rho=0.7, rho_labellers=2, judge_only=1000)
    out = st.plan_campaign(**inputs, items=50, labellers=2, target_width=0.4)
    assert out["ppi_width"] < out["human_only_width"]
    for row in out["needed"]:
        k = row["labellers_per_item"]
        for name in ("ppi", "human_only"):
            n = row[f"{name}_items_per_source"]
            width = st.plan_width(**inputs, items=np.array([n - 1, n]), labellers=k)[f"{name}_width"]
            assert width[1] <= 0.4 < width[0]
            assert row[f"{name}_judgments_per_source"] == n * k
        assert row["ppi_items_per_source"] < row["human_only_items_per_source"]
    # human-only by hand, one labeller: 2 z sqrt(2 (0.64 + 0.36) / n) <= 0.4
    z = norm.ppf(0.975)
    assert out["needed"][0]["human_only_items_per_source"] == int(np.ceil(2 * (2 * z / 0.4) ** 2))
    blind = st.plan_campaign(**{**inputs, "rho": 0.0}, items=50, labellers=2, target_width=0.4)
    assert all(r["ppi_items_per_source"] == r["human_only_items_per_source"] for r in blind["needed"])
    assert (
        st.plan_campaign(**inputs, items=50, labellers=2, target_width=0.001, max_items=1000)["needed"][0][
            "ppi_items_per_source"
        ]
        is None
    )
