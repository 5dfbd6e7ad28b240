"""`bench train` and `bench dashboards` still run at a tiny size, peer baselines and ratios included."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_bench_train_runs_sae_lens_runner_beside_the_shared_pass():
    from compute.benchmarks import train

    figures = train.run(
        tokens=128, rss_tokens=64, minibatch_tokens=64, context_size=32, batch_size=2, repeats=1, threads=1
    )
    assert figures["saes"][2].startswith("ssae ")
    # The peer trained three plain SAEs of the same widths, and the JSON says SSAE had no equivalent.
    widths = [s.split("d_sae=")[1] for s in figures["saes"]]
    assert [s.split("d_sae=")[1].split(" ")[0] for s in figures["saelens_saes"]] == widths
    assert "no SSAE" in figures["saelens_note"]
    assert figures["saelens_tokens_per_s"] > 0
    ratio = figures["shared_tokens_per_s"] / figures["saelens_tokens_per_s"]
    assert figures["over_saelens"] == pytest.approx(ratio, rel=0.01)


def test_bench_dashboards_counts_packing_against_the_hook_forward():
    from compute.benchmarks import dashboards

    figures = dashboards.run(tokens=256, context_size=32, expansion=1, features_per_batch=288, repeats=1)
    assert figures["methods_agree"] is True
    assert figures["build_s"] == pytest.approx(figures["dashboards_s"] + figures["pack_for_storage_s"], abs=0.002)
    assert figures["dashboards_over_hook_forward"] == pytest.approx(
        figures["build_s"] / figures["hook_forward_s"], rel=0.02
    )
    assert figures["hook_forward_s"] > 0
