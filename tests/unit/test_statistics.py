"""The results statistics against independent computations: brute force, hand values, reference libraries."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from labelsite import statistics as st


def _null_ratings(rng: np.random.Generator, n_features: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean scores of two sources whose true means differ by `shift` (rubric 0..3)."""
    a = np.clip(np.round(rng.normal(1.0 + shift, 0.9, n_features)), 0, 3)
    b = np.clip(np.round(rng.normal(1.0, 0.9, n_features)), 0, 3)
    return a, b


def test_bootstrap_over_features_matches_brute_force_resampling():
    rng = np.random.default_rng(1)
    units = np.repeat(np.arange(40), 3)
    values = rng.integers(0, 4, len(units)).astype(float) + np.repeat(rng.normal(0, 1, 40), 3)
    est = st.bootstrap_mean(values, units, n_resamples=4000, seed=3)
    # brute force: draw 40 features with replacement, take all their judgments, average
    by_unit = [values[units == u] for u in range(40)]
    brute = []
    for _ in range(4000):
        picked = rng.integers(0, 40, 40)
        brute.append(np.concatenate([by_unit[i] for i in picked]).mean())
    low, high = np.quantile(brute, [0.025, 0.975])
    assert est.mean == pytest.approx(values.mean(), abs=1e-4)
    assert est.low == pytest.approx(low, abs=0.06)
    assert est.high == pytest.approx(high, abs=0.06)
    assert est.resampled == "features"


def test_feature_bootstrap_is_wider_than_a_judgment_bootstrap_when_features_cluster():
    rng = np.random.default_rng(2)
    units = np.repeat(np.arange(60), 3)
    values = np.repeat(rng.normal(0, 1, 60), 3) + rng.normal(0, 0.1, 180)  # judgments of a feature agree
    clustered = st.bootstrap_mean(values, units, seed=0)
    naive = st.bootstrap_mean(values, np.arange(180), seed=0)  # every judgment its own "feature"
    assert (clustered.high - clustered.low) > 1.4 * (naive.high - naive.low)


def test_two_way_bootstrap_resamples_labellers_and_widens_for_labeller_bias():
    rng = np.random.default_rng(4)
    n_features, raters = 80, np.array([0, 1, 2])
    units = np.repeat(np.arange(n_features), 3)
    labellers = np.tile(raters, n_features)
    bias = np.array([-1.0, 0.0, 1.0])
    values = rng.normal(0, 0.3, len(units)) + bias[labellers]
    both = st.bootstrap_mean(values, units, labellers, seed=0)
    features_only = st.bootstrap_mean(values, units, seed=0)
    assert both.resampled == "features and labellers" and both.n_raters == 3
    assert (both.high - both.low) > 3 * (features_only.high - features_only.low)


def test_bootstrap_interval_covers_the_true_mean_at_about_the_nominal_rate():
    covered = 0
    for seed in range(60):
        rng = np.random.default_rng(100 + seed)
        units = np.repeat(np.arange(50), 2)
        values = np.repeat(rng.normal(2.0, 1.0, 50), 2) + rng.normal(0, 0.5, 100)
        est = st.bootstrap_mean(values, units, n_resamples=1000, seed=seed)
        covered += est.low <= 2.0 <= est.high
    assert covered >= 50  # 95% nominal; a judgment-level bootstrap covers far less often here


def test_distribution_counts_every_rubric_level():
    out = st.distribution([0, 3, 3, 1], [0, 1, 2, 3])
    assert out == {
        "0": {"count": 1, "share": 0.25},
        "1": {"count": 1, "share": 0.25},
        "2": {"count": 0, "share": 0.0},
        "3": {"count": 2, "share": 0.5},
    }


def test_unit_means_average_each_feature():
    features, means = st.unit_means([1, 3, 2, 2, 0], ["x", "x", "y", "y", "z"])
    assert list(features) == ["x", "y", "z"]
    assert list(means) == [2.0, 2.0, 0.0]


def test_cliffs_delta_equals_the_brute_force_dominance_count():
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 4, 30).astype(float), rng.integers(0, 4, 25).astype(float)
    brute = np.mean(np.sign(x[:, None] - y[None, :]))
    assert st.cliffs_delta(x, y) == pytest.approx(brute)
    assert st.cliffs_delta(np.array([3.0, 3.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_permutation_p_value_small_for_a_real_difference_and_not_for_none_over_seeds():
    significant_null, real_p = 0, []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = _null_ratings(rng, 60, shift=0.0)
        significant_null += st.compare(a, b, n_resamples=999, seed=seed).p_value < 0.05
        a, b = _null_ratings(rng, 60, shift=1.0)
        real = st.compare(a, b, n_resamples=999, seed=seed)
        real_p.append(real.p_value)
        assert real.cliffs_delta > 0 and real.delta_low > 0  # the interval excludes "no effect"
    assert max(real_p) < 0.01
    assert significant_null <= 4  # about 1 in 20 expected at the 5% level


def test_compare_matches_a_brute_force_permutation_test():
    rng = np.random.default_rng(9)
    a, b = rng.normal(0.3, 1, 25), rng.normal(0, 1, 25)
    observed = a.mean() - b.mean()
    pooled = np.concatenate([a, b])
    extreme = 0
    for _ in range(5000):
        perm = rng.permutation(pooled)
        extreme += abs(perm[:25].mean() - perm[25:].mean()) >= abs(observed) - 1e-12
    brute_p = (extreme + 1) / 5001
    result = st.compare(a, b, n_resamples=5000, seed=1)
    assert result.p_value == pytest.approx(brute_p, abs=0.03)
    assert result.difference == pytest.approx(observed, abs=1e-4)


def test_labeller_adjusted_means_remove_a_strict_labellers_pull():
    # Source A is judged mostly by a strict labeller (−1), source B mostly by a lenient one (+1);
    # both sources are truly 2.0. Raw means differ; adjusted means do not.
    groups, raters, values = [], [], []
    for source, share_strict in (("A", 0.8), ("B", 0.2)):
        for i in range(100):
            rater = "strict" if i < share_strict * 100 else "lenient"
            groups.append(source)
            raters.append(rater)
            values.append(2.0 + (-1.0 if rater == "strict" else 1.0))
    values = np.array(values)
    raw = {g: values[np.array(groups) == g].mean() for g in ("A", "B")}
    assert raw["A"] == pytest.approx(1.4) and raw["B"] == pytest.approx(2.6)
    adjusted = st.adjusted_means(values, groups, raters)
    assert adjusted == {"A": pytest.approx(2.0), "B": pytest.approx(2.0)}


def test_spearman_of_a_monotone_relation_is_one_and_unknowns_are_dropped():
    out = st.spearman([1, 2, 3, 4, np.nan], [10, 20, 35, 90, 5])
    assert out["rho"] == 1.0 and out["n"] == 4
    assert st.spearman([1, 1, 1], [1, 2, 3])["rho"] is None


def test_log_odds_ratio_hand_values():
    assert st.log_odds_ratio(0.5, 0.5) == pytest.approx(0.0)
    assert st.log_odds_ratio(0.2, 0.1) == pytest.approx(np.log(0.25) - np.log(1 / 9))
    assert np.isfinite(st.log_odds_ratio(0.01, 0.0))


# --- agreement ---------------------------------------------------------------------------------------

# Krippendorff's own example (the package documents nominal 0.691358 for it).
RELIABILITY = [
    [np.nan, np.nan, np.nan, np.nan, np.nan, 3, 4, 1, 2, 1, 1, 3, 3, np.nan, 3],
    [1, np.nan, 2, 1, 3, 3, 4, 3, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
    [np.nan, np.nan, 2, 1, 3, 4, 4, np.nan, 2, 1, 1, 3, 3, np.nan, 4],
]


def _long(matrix):
    units, raters, values = [], [], []
    for r, row in enumerate(matrix):
        for u, v in enumerate(row):
            if not np.isnan(v):
                units.append(u)
                raters.append(r)
                values.append(int(v))
    return units, raters, values


def test_alpha_equals_the_hand_value_on_a_small_case():
    # Two raters, three units: (0,0), (1,1), (0,1). Coincidences o00=2, o11=2, o01=o10=1; n0=n1=3, n=6.
    # D_o = 2/6, D_e = 2·3·3/(6·5) = 0.6, alpha = 1 − (1/3)/0.6 = 4/9 (nominal; ordinal is the same with
    # two adjacent values).
    matrix, _ = st.rating_matrix([0, 0, 1, 1, 0, 1], [1, 1, 2, 2, 3, 3], ["a", "b", "a", "b", "a", "b"], [0, 1])
    for metric in ("nominal", "ordinal"):
        out = st.krippendorff_alpha(matrix, n_values=2, level_of_measurement=metric, n_resamples=50)
        assert out["alpha"] == pytest.approx(4 / 9, abs=1e-4)
        reference = krippendorff.alpha(reliability_data=matrix, level_of_measurement=metric)
        assert out["alpha"] == pytest.approx(reference, abs=1e-4)


@pytest.mark.parametrize("metric", ["nominal", "ordinal"])
def test_alpha_equals_the_package_on_krippendorffs_example(metric):
    units, raters, values = _long(RELIABILITY)
    domain = [1, 2, 3, 4]
    matrix, names = st.rating_matrix(values, units, raters, domain)
    assert names == [0, 1, 2]
    out = st.krippendorff_alpha(matrix, n_values=4, level_of_measurement=metric, n_resamples=200)
    reference = krippendorff.alpha(reliability_data=RELIABILITY, value_domain=domain, level_of_measurement=metric)
    assert out["alpha"] == pytest.approx(reference, abs=1e-4)
    if metric == "nominal":
        assert out["alpha"] == pytest.approx(0.691358, abs=1e-4)
    assert out["low"] <= out["alpha"] <= out["high"]
    assert out["units"] == 12  # units with at least two values


def test_alpha_is_undefined_without_pairable_variation():
    matrix, _ = st.rating_matrix([2, 2, 2, 2], [1, 1, 2, 2], ["a", "b", "a", "b"], [0, 1, 2, 3])
    assert st.krippendorff_alpha(matrix, n_values=4, level_of_measurement="ordinal")["alpha"] is None


def test_pairwise_agreement_matrix_against_sklearn_and_hand_counts():
    units, raters, values = _long(RELIABILITY)
    matrix, names = st.rating_matrix(values, units, raters, [1, 2, 3, 4])
    pairs = {(p["a"], p["b"]): p for p in st.pairwise_agreement(matrix, names, n_values=4, weights="quadratic")}
    # raters 0 and 2 share units 5..12 and 14: values (3,4) (4,4) (2,2) (1,1) (1,1) (3,3) (3,3) (3,4)
    first = [3, 4, 2, 1, 1, 3, 3, 3]
    third = [4, 4, 2, 1, 1, 3, 3, 4]
    assert pairs[(0, 2)]["shared"] == 8
    assert pairs[(0, 2)]["percent_agreement"] == pytest.approx(100 * 6 / 8)
    expected = cohen_kappa_score(first, third, labels=[1, 2, 3, 4], weights="quadratic")
    assert pairs[(0, 2)]["kappa"] == pytest.approx(expected, abs=1e-4)
    # raters 0 and 1 share units 5, 6 and 7: (3,3) (4,4) (1,3)
    assert pairs[(0, 1)]["shared"] == 3
    assert pairs[(0, 1)]["percent_agreement"] == pytest.approx(100 * 2 / 3, abs=0.01)
