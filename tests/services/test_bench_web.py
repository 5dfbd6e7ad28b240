"""`bench web` end to end at a small size: a real gunicorn on loopback, a throwaway database, labellers."""

from __future__ import annotations

import pytest

from labelsite.benchmarks import web

pytestmark = pytest.mark.django_db


def test_bench_web_runs_and_reports_its_figures():
    figures = web.run(
        labellers=3, items=60, judgments=120, items_per_labeller=4, serial_pages=5,
        pace_s=0.5, capacity_start=2, capacity_max=4, capacity_step_s=2.0, capacity_p95_ms=60_000,
    )  # fmt: skip
    assert figures["errors"] == 0, figures["error_samples"]
    # 3 labellers x 4 items x (next, page, submit)
    assert figures["requests"] == 36
    # The paced sweep doubles 2 -> 4 labellers; with a generous bound both steps are within it.
    steps = figures["capacity"]["steps"]
    assert [step["labellers"] for step in steps] == [2, 4]
    assert all(step["requests"] > 0 and step["errors"] == 0 for step in steps)
    assert figures["capacity_labellers"] == 4
    # 5 serial page views judge nothing (one submit per 10); paced labellers add their own judgments.
    assert figures["judgments_after"] >= 120 + 12
    assert figures["invariants_hold"] is True
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert figures["requests_per_s"] > 0
    assert figures["labelling_page_one_labeller"]["requests"] == 5


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert web._percentile(values, 95) == 95.0
    assert web._percentile(values, 50) == 50.0
    assert web._percentile([7.0], 95) == 7.0
