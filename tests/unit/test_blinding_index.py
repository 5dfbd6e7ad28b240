"""Bang's and James' blinding indices against a published trial's data, worked by hand.

The data: the CRISP trial's blinding survey as tabulated in Bang, Ni & Davis (2004), "Assessment of blinding in
clinical trials", Controlled Clinical Trials 25:143-156, Table 7 (also the example of the R package BI, by
Schwartz & Mercaldo). Rows are guesses (treatment, placebo, don't know), columns the arm:

                 treatment  placebo
    treatment        82        27
    placebo          25        29
    don't know      170        83

Every expected value below is derived here from the definitions (Bang 2004; James et al. 1996), not from
the code under test; James' variance is checked against the delta method computed numerically.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from labelsite.statistics import Z95, bang_index, james_index

CRISP = [[82, 27], [25, 29], [170, 83]]


def test_bang_index_of_the_crisp_trial_by_hand():
    treatment, placebo = bang_index(CRISP)
    # treatment arm: 277 answers, 82 right, 25 wrong -> (82 - 25) / 277; placebo: 139 answers, 29 right, 27 wrong
    assert treatment["estimate"] == pytest.approx(57 / 277, abs=1e-4) and treatment["n"] == 277
    assert placebo["estimate"] == pytest.approx(2 / 139, abs=1e-4) and placebo["n"] == 139
    # the variance of one answer scored +1 right, -1 wrong, 0 don't know is E[X^2] - E[X]^2, over n
    for arm, right, wrong, n in ((treatment, 82, 25, 277), (placebo, 29, 27, 139)):
        se = math.sqrt(((right + wrong) / n - ((right - wrong) / n) ** 2) / n)
        assert arm["se"] == pytest.approx(se, abs=1e-4)
        assert arm["ci_low"] == pytest.approx((right - wrong) / n - Z95 * se, abs=1e-4)
        assert arm["ci_high"] == pytest.approx((right - wrong) / n + Z95 * se, abs=1e-4)
    # the treatment arm guessed better than chance: its interval lies above 0; the placebo arm's covers 0
    assert treatment["ci_low"] > 0 and placebo["ci_low"] < 0 < placebo["ci_high"]


def _james(p: np.ndarray) -> float:
    """James' index from the 6 cell proportions (guess x arm, then don't know), written out for two arms."""
    (tt, tp), (pt, pp), (dt, dp) = p.reshape(3, 2)
    dk = dt + dp
    guessed = 1 - dk
    observed = 0.5 * (tp + pt) / guessed  # wrong guesses weigh 0.5, right ones 0
    expected = 0.5 * ((tt + tp) * (tp + pp) + (pt + pp) * (tt + pt)) / guessed**2
    kappa = (observed - expected) / expected
    return (1 + dk + guessed * kappa) / 2


def test_james_index_of_the_crisp_trial_by_hand():
    result = james_index(CRISP)
    n = 416
    # by hand in fractions: 253 of 416 don't know; of the 163 who guessed, 52 were wrong (weight 1/2); guesses
    # "treatment" 109, "placebo" 54; arms among those who guessed: treatment 107, placebo 56
    p_dk = Fraction(253, n)
    p_o = Fraction(1, 2) * Fraction(52, 163)
    p_e = Fraction(1, 2) * Fraction(109 * 56 + 54 * 107, 163**2)
    kappa = (p_o - p_e) / p_e
    expected = (1 + p_dk + (1 - p_dk) * kappa) / 2
    assert kappa == Fraction(26 * 163 - 5941, 5941)
    assert result["estimate"] == pytest.approx(float(expected), abs=1e-4) and result["n"] == n
    assert float(expected) == pytest.approx(0.7479, abs=1e-4)  # above 0.5: more blind than random guessing
    # James' variance is the delta method's: gradient of the index in the cell proportions (numerically)
    # against the multinomial covariance diag(p) - p p^T, over n
    p = np.array(CRISP, dtype=float).ravel() / n
    assert _james(p) == pytest.approx(float(expected), abs=1e-12)
    h = 1e-7
    gradient = np.array([(_james(p + h * e) - _james(p - h * e)) / (2 * h) for e in np.eye(6)])
    delta_se = math.sqrt(gradient @ (np.diag(p) - np.outer(p, p)) @ gradient / n)
    assert result["se"] == pytest.approx(delta_se, abs=1e-4)  # stored to 4 decimals
    assert result["ci_low"] == pytest.approx(float(expected) - Z95 * delta_se, abs=1e-3)


def test_indices_at_their_extremes_and_for_three_sources():
    # everyone right: Bang 1 for each source, James 0 (complete unblinding)
    right = [[10, 0], [0, 12], [0, 0]]
    assert [a["estimate"] for a in bang_index(right)] == [1.0, 1.0]
    assert james_index(right)["estimate"] == pytest.approx(0.0, abs=1e-9)
    # everyone "don't know": Bang 0, James 1 with no error (James 1996, p. 1425)
    unsure = [[0, 0], [0, 0], [7, 9]]
    assert [a["estimate"] for a in bang_index(unsure)] == [0.0, 0.0]
    assert james_index(unsure) == {"estimate": 1.0, "se": 0.0, "ci_low": 1.0, "ci_high": 1.0, "n": 16}
    # three sources, guesses spread evenly over them: random guessing, Bang 0 for each source, James 0.5
    even = [[4, 4, 4], [4, 4, 4], [4, 4, 4], [3, 0, 6]]
    assert [a["estimate"] for a in bang_index(even)] == [0.0, 0.0, 0.0]
    assert james_index(even)["estimate"] == pytest.approx(0.5 + 0.5 * 9 / 45, abs=1e-4)  # p_dk = 9/45
    assert bang_index([[1, 0], [0, 0], [0, 0]])[1] is None  # nobody judged the second source
    with pytest.raises(ValueError):
        bang_index([[1, 2], [3, 4]])
