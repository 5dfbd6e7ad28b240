"""`bench export` end to end at a small size: a throwaway database, child processes streaming the exports."""

from __future__ import annotations

import pytest

from labelsite.benchmarks import export

pytestmark = pytest.mark.django_db


def test_bench_export_runs_and_reports_its_figures():
    figures = export.run(judgments=2000, small_judgments=400, repeats=1)
    assert figures["rows"] == 2000
    for key in ("csv_s", "parquet_s", "agreement_s", "peak_rss_ratio_100k_over_10k"):
        assert figures[key] > 0, key
    assert figures["detail"]["agreement_judgments"] == 2000
    assert set(figures["detail"]["agreement_alpha"]) == {"domain_score", "general_score"}
    # item i is judged by labellers i, i+1, i+2, i+3 (mod 10): the 30 pairs at circular distance <= 3 share
    # items, the other 15 never do; one matrix per score question
    assert figures["detail"]["agreement_pairs"] == 2 * 30
    assert figures["detail"]["csv_mib"] > figures["detail"]["parquet_mib"] >= 0  # Parquet compresses
