"""Training health flags, each on a curve built to show it, and none on a clean one."""

from __future__ import annotations

import numpy as np

from compute.ml.measures import HEALTH, running_median, spikes, training_health

D_SAE = 1152


def curve(fvu: list[float], *, steps_between: int = 20) -> list[dict]:
    return [{"step": (i + 1) * steps_between, "fvu": v, "l0": 30.0} for i, v in enumerate(fvu)]


def clean_fvu(n: int = 100, seed: int = 0) -> list[float]:
    """Falls from 1 to a plateau of 0.2, with 5% minibatch noise."""
    rng = np.random.default_rng(seed)
    base = 0.2 + 0.8 * np.exp(-np.arange(n) / 10)
    return list(base * (1 + 0.05 * rng.standard_normal(n)))


HEALTHY = {"l0": 30.0, "dead": 100}


def names(health: dict) -> list[str]:
    return [f["flag"] for f in health["flags"]]


def test_a_clean_run_has_no_flag():
    health = training_health(curve(clean_fvu()), d_sae=D_SAE, final=HEALTHY, eval_fvu=0.21)
    assert health == {"flags": [], "spikes": 0}


def test_spikes_are_points_far_above_the_median_before_them():
    values = [0.5, 0.5, 0.5, 0.5, 0.5, 2.6, 0.5, 0.5, 1.4, 0.5]
    # 2.6 > 3 x 0.5 and 2.1 above; 1.4 < 1.5 is not; the point after a spike compares with a median of 0.5.
    assert spikes(values) == [5]
    assert spikes([0.01, 0.01, 0.01, 0.05]) == []  # five times the median, but only 0.04 above it


def test_unstable_run_is_flagged_with_its_spike_count():
    fvu = clean_fvu()
    fvu[60] = fvu[80] = 4.7  # one batch of D at the same step of the shared pass, twice
    health = training_health(curve(fvu), d_sae=D_SAE, final=HEALTHY, eval_fvu=0.21)
    assert names(health) == ["unstable"]
    assert health["spikes"] == 2
    assert "4.7" in health["flags"][0]["reason"]


def test_a_run_ending_worse_than_its_best_is_flagged():
    fvu = clean_fvu()
    fvu[-20:] = [0.2 + 0.035 * i for i in range(1, 21)]  # creeps up from 0.2 to 0.9 over the last fifth
    health = training_health(curve(fvu), d_sae=D_SAE, final=HEALTHY, eval_fvu=0.5)
    assert "worse_than_best" in names(health)
    assert "unstable" not in names(health)  # a slow rise is not a spike
    smoothed = running_median(fvu, HEALTH.smooth)
    assert smoothed[-1] > 1.5 * smoothed[50:].min()


def test_collapsed_by_l0_or_by_dead_features():
    by_l0 = training_health(curve(clean_fvu()), d_sae=D_SAE, final={"l0": 0.5, "dead": 100}, eval_fvu=0.3)
    by_dead = training_health(curve(clean_fvu()), d_sae=D_SAE, final={"l0": 4.0, "dead": 1124}, eval_fvu=0.3)
    assert names(by_l0) == names(by_dead) == ["collapsed"]
    assert "1,124 of 1,152" in by_dead["flags"][0]["reason"]
    assert names(training_health([], d_sae=D_SAE, final={"l0": 4.0, "dead": 576})) == []  # half is not most


def test_diverged_on_eval_fvu_at_or_above_one():
    assert names(training_health(curve(clean_fvu()), d_sae=D_SAE, final=HEALTHY, eval_fvu=1.34)) == ["diverged"]
    assert names(training_health(curve(clean_fvu()), d_sae=D_SAE, final=HEALTHY, eval_fvu=0.99)) == []
    # Without an eval split, the end of the training curve decides.
    assert names(training_health(curve([1.2] * 60), d_sae=D_SAE, final=HEALTHY)) == ["diverged"]


def test_dense_above_the_stated_share_of_features():
    dense = training_health(curve(clean_fvu()), d_sae=D_SAE, final={"l0": 441.0, "dead": 0}, eval_fvu=0.54)
    assert names(dense) == ["dense"]
    assert names(training_health([], d_sae=D_SAE, final={"l0": 0.1 * D_SAE - 1, "dead": 0})) == []


def test_undertrained_joins_the_flags():
    health = training_health(curve(clean_fvu(), steps_between=5), d_sae=D_SAE, final=HEALTHY, eval_fvu=0.2)
    assert names(health) == ["undertrained"]
    assert "500 optimiser steps" in health["flags"][0]["reason"]
