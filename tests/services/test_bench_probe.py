"""`bench probe` end to end at a small size on a tiny model: gunicorn, a warm probe worker, timed browser requests."""

from __future__ import annotations

from compute.benchmarks import probe
from tests.factories import tiny_model_folder


def test_bench_probe_runs_and_reports_its_figures(tmp_path):
    folder = tiny_model_folder(tmp_path / "tiny-model")
    figures = probe.run(model_path=str(folder), texts=6, warmup=1, d_sae=64, decompositions=2, repeats=1)
    assert figures["probe_errors"] == 0
    assert figures["probe_requests"] == 6
    assert 0 < figures["probe_p50_s"] <= figures["probe_p95_s"] <= figures["probe_max_s"]
    assert figures["probe_tokens_mean"] == 64  # byte-level tokens: 64 bytes per text
    assert figures["measure_texts"] == 2 * (30 + 6)
    assert figures["measure_over_forward"] > 0


def test_percentile_is_nearest_rank():
    assert probe._percentile([float(v) for v in range(1, 101)], 95) == 95.0
    assert probe._percentile([3.0], 95) == 3.0
