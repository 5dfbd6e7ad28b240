"""The cost of a dashboard build, worked out by hand for given settings (compute.ml.config)."""

from __future__ import annotations

from compute.ml.config import DASHBOARD_LOG_BINS, DashboardJobConfig, DashboardSpeed

SMALL = DashboardJobConfig(
    max_tokens=100_000, context_size=64, batch_size=5, feature_chunk=32,
    top_k=10, ctx_before=4, ctx_after=5, n_quantile_bins=2, per_bin=3, n_logit_tokens=0,
)  # fmt: skip


def test_a_corpus_shorter_than_the_budget_bounds_the_tokens_and_passes():
    cost = SMALL.cost(d_in=16, d_sae=64, windows_available=158)
    # the budget allows 100,000 // 64 = 1,562 windows; the corpus holds 158
    assert cost.windows == 158
    assert cost.model_tokens == 158 * 64 == 10_112
    assert cost.scored_tokens == 158 * 63
    assert cost.forward_passes == 32  # 158 windows, 5 a pass: 31 full passes and one of 3
    assert cost.feature_chunks == 2 and cost.rows == 64
    assert cost.cache_bytes == 10_112 * (4 * 16 + 8 + 1)  # float32 activations, int64 token, bool mask


def test_the_budget_bounds_a_long_corpus_and_uncounted_ones():
    counted = SMALL.cost(d_in=16, d_sae=64, windows_available=10**6)
    uncounted = SMALL.cost(d_in=16, d_sae=64, windows_available=None)
    assert counted.windows == uncounted.windows == 1562
    assert counted.forward_passes == 313


def test_memory_is_the_sae_a_batch_and_the_chunks_running_state():
    cost = SMALL.cost(d_in=16, d_sae=64, windows_available=158)
    n = 5 * 64  # tokens of one forward pass
    sae = 4 * (2 * 16 * 64 + 64 + 16 + 2 * n * 64)  # weights, pre-activations and activations of all 64 features
    batch = 4 * n * (16 + 32)  # model activations and the chunk's masked activations
    example = 8 + 4 + 8 + 10 * (8 + 4)  # value, position, hash or priority; a 10-token window of ids and values
    per_feature = 10 * example + 2 * 3 * example + 512 * 8
    assert cost.memory_bytes == sae + batch + 32 * per_feature == 436_544


def test_storage_is_rows_times_raw_bytes_scaled_by_the_measured_compression():
    raw = SMALL.cost(d_in=16, d_sae=64, windows_available=158)
    assert not raw.row_bytes_measured
    assert raw.row_bytes == 16 * 10 * 8  # 10 top + 2 x 3 samples, 10 tokens each, id and value
    assert raw.storage_bytes == 64 * 1280
    measured = SMALL.cost(d_in=16, d_sae=64, windows_available=158, compression=0.2)
    assert measured.row_bytes_measured and measured.row_bytes == 256 and measured.storage_bytes == 16_384
    # the default settings: 20 top + 10 x 5 samples of 33 tokens, 10 logit tokens each way
    assert DashboardJobConfig().raw_row_bytes == 70 * 33 * 8 + 20 * 8 == 18_640


def test_time_is_load_plus_model_pass_plus_feature_pass_at_the_measured_speed():
    assert SMALL.cost(d_in=16, d_sae=64, windows_available=158).seconds is None  # nothing measured: no time
    speed = DashboardSpeed(device="cpu", builds=2, load_s=3.0, model_tokens_per_s=1000.0, feature_tokens_per_s=2e5)
    cost = SMALL.cost(d_in=16, d_sae=64, windows_available=158, speed=speed)
    assert abs(cost.seconds - (3.0 + 10_112 / 1000 + 158 * 63 * 64 / 2e5)) < 1e-9


def test_the_memory_bound_knows_the_dashboards_histogram_size():
    from compute.ml.dashboards import N_LOG_BINS

    assert DASHBOARD_LOG_BINS == N_LOG_BINS
