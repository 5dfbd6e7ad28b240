"""Which sweep points the study's histograms show: the researcher's picks, else healthy points closest in L0."""

from __future__ import annotations

from compute.selectors.studies import representatives

FLAG = [{"flag": "collapsed", "label": "collapsed", "reason": "L0 0.5"}]


def row(sae_id: int, method: str, l0: float, health=None) -> dict:
    return {"sae_id": sae_id, "method": method, "l0": l0, "health": health or []}


ROWS = [
    row(1, "gsae", 40.0),
    row(2, "direct", 10.0),
    row(3, "direct", 100.0),
    row(4, "direct", 600.0),
    row(5, "ssae", 120.0, FLAG),  # closest to 100, but collapsed
    row(6, "ssae", 300.0),
    row(7, "ssae", 90.0),
]


def ids(rows: list[dict]) -> list[int]:
    return [r["sae_id"] for r in rows]


def test_default_is_the_healthy_points_closest_in_l0():
    # Healthy pairs by |log ratio|: (100, 90) 0.105 beats (600, 300) 0.69 and every other pair.
    assert ids(representatives(ROWS, include_gsae=False)) == [3, 7]
    assert ids(representatives(ROWS, include_gsae=True)) == [1, 3, 7]


def test_a_pick_is_shown_and_the_other_methods_match_it():
    # SSAE 300 picked: Direct 600 (ratio 2) is closer than Direct 100 (ratio 3).
    assert ids(representatives(ROWS, include_gsae=False, picks=[6])) == [4, 6]
    # A flagged point is shown when the researcher picks it.
    assert ids(representatives(ROWS, include_gsae=False, picks=[5, 2])) == [2, 5]


def test_a_method_with_only_flagged_points_still_shows_one():
    rows = [row(2, "direct", 10.0), row(5, "ssae", 120.0, FLAG), row(8, "ssae", 12.0, FLAG)]
    assert ids(representatives(rows, include_gsae=False)) == [2, 8]
