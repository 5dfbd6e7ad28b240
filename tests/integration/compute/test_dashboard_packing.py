"""Stored dashboards: examples and per-token arrays packed as binary read back as the lists the JSON format stored."""

from __future__ import annotations

import json
import math
import struct
import zlib

import numpy as np
import pytest
import torch

from compute.ml.activations import ActivationBatch
from compute.ml.dashboards import DashboardConfig, compute_dashboards
from compute.models import FeatureDashboard
from compute.models.dashboards import ARRAYS_MAGIC, EXAMPLES_MAGIC
from compute.services.dashboard_build import TokenStrings, pack_chunk, pack_feature


def _example(rng, n: int, peak: float, *, negative: bool = False) -> dict:
    values = rng.uniform(-peak if negative else 0.0, peak, n).astype(np.float32)
    return {"tokens": rng.integers(0, 5_000, n), "values": values, "center": n // 2,
            "value": float(values[n // 2]), "seq": int(rng.integers(0, 99)), "pos": int(rng.integers(0, 128))}  # fmt: skip


def _feature(rng, peak: float, *, negative: bool = False) -> dict:
    top = [_example(rng, int(rng.integers(1, 34)), peak, negative=negative) for _ in range(7)]
    quantiles = [
        {"lo": peak * b / 3, "hi": peak * (b + 1) / 3, "count": 10 + b,
         "examples": [_example(rng, 33, peak, negative=negative) for _ in range(b)]}
        for b in range(3)
    ]  # fmt: skip
    return {"index": 3, "n_tokens": 4_000, "n_firing": 40, "frequency": 0.01, "max": peak, "mean": peak / 3,
            "histogram": {"lo": 0.0, "hi": peak, "counts": [1, 2, 3]}, "top": top, "quantiles": quantiles}  # fmt: skip


def _decoded(ids) -> list[str]:
    return [f"<{t}>" for t in ids]


def _assert_stored(row: FeatureDashboard, feature: dict, logits: dict) -> None:
    """`row` reads back as the JSON format stored `feature`: computed here from the dict, example by example."""
    data = row.data
    assert (row.feature_index, row.n_firing, row.max_activation) == (
        feature["index"],
        feature["n_firing"],
        feature["max"],
    )
    assert row.frequency == pytest.approx(feature["frequency"])
    decimals = max(0, 3 - math.floor(math.log10(feature["max"]))) if feature["max"] > 0 else 4
    examples = feature["top"] + [ex for q in feature["quantiles"] for ex in q["examples"]]
    stored = data["top"] + [ex for q in data["quantiles"] for ex in q["examples"]]
    assert len(stored) == len(examples) and len(data["top"]) == len(feature["top"])
    for ex, got in zip(examples, stored, strict=True):
        assert [data["strings"][i] for i in got["t"]] == [f"<{t}>" for t in ex["tokens"].tolist()]
        # what the JSON format stored: the values rounded to `decimals`, through a JSON round trip
        assert got["v"] == json.loads(json.dumps(np.round(ex["values"].astype(np.float64), decimals).tolist()))
        assert max(abs(a - b) for a, b in zip(got["v"], ex["values"].tolist(), strict=True)) <= 0.5 * 10**-decimals
        assert (got["c"], got["s"], got["p"]) == (ex["center"], ex["seq"], ex["pos"]) and "n" not in got
        assert got["x"] == float(f"{ex['value']:.4g}")
    seen = [t for ex in examples for t in ex["tokens"].tolist()]
    assert data["strings"] == [f"<{t}>" for t in dict.fromkeys(seen)]  # by first appearance, each once
    assert [(q["lo"], q["hi"], q["count"], len(q["examples"])) for q in data["quantiles"]] == [
        (float(f"{q['lo']:.4g}"), float(f"{q['hi']:.4g}"), q["count"], len(q["examples"])) for q in feature["quantiles"]
    ]
    assert data["logits"] == logits and data["histogram"] == feature["histogram"]
    assert data["mean"] == (float(f"{feature['mean']:.4g}") if feature["mean"] else 0)


@pytest.mark.parametrize(("peak", "negative"), [(3.7, False), (0.00123, False), (54_321.0, False), (2.5, True)])
def test_packed_arrays_read_back_as_the_json_format_stored_them(peak, negative):
    feature = _feature(np.random.default_rng(int(peak * 7)), peak, negative=negative)
    logits = {"pos": [["a", 1.0]], "neg": []}
    row = pack_feature(feature, TokenStrings(_decoded), logits)
    assert bytes(row.payload).startswith(EXAMPLES_MAGIC)
    assert len(row.data["top"]) == 7 and [len(q["examples"]) for q in row.data["quantiles"]] == [0, 1, 2]
    _assert_stored(row, feature, logits)


def test_a_computed_chunk_packs_feature_by_feature_as_its_dicts_say():
    """`pack_chunk` works on the whole chunk's arrays at once; every row must hold its own feature's dict."""
    g = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(5):
        tokens = torch.randint(1, 400, (4, 16), generator=g)
        acts = torch.randn(4, 16, 6, generator=g)
        batches.append(ActivationBatch(tokens, acts, torch.ones(4, 16, dtype=torch.bool)))
    w, bias = torch.randn(6, 40, generator=g), torch.randn(40, generator=g) - 1.0
    bias[[4, 17]] = -1e4  # two dead features
    w[:, 9] *= 1e-3  # and one with tiny activations (more decimals)
    config = DashboardConfig(top_k=5, ctx_before=3, ctx_after=2, n_quantile_bins=4, per_bin=3)
    logits = [{"pos": [[f"p{i}", float(i)]], "neg": []} for i in range(40)]
    n_rows = 0
    for chunk in compute_dashboards(
        batches=lambda: iter(batches),
        encode=lambda x: torch.relu(x @ w + bias),
        d_sae=40,
        config=config,
        feature_chunk=16,
    ):
        rows = pack_chunk(chunk, TokenStrings(_decoded), logits[chunk.lo : chunk.lo + len(chunk)])
        for row, feature in zip(rows, chunk.features(), strict=True):
            _assert_stored(row, feature, logits[feature["index"]])
        n_rows += len(rows)
    assert n_rows == 40


def _legacy_lsa1(data: dict, ids: list[int], scaled: list[int], decimals: int) -> bytes:
    """A payload as builds before LSA2 wrote it: examples with their length "n" in the header."""
    spec = {"n": len(ids), "ids": "<u2", "values": "<i2", "decimals": decimals}
    header = json.dumps({**data, "_arrays": spec}).encode()
    arrays = np.asarray(ids, "<u2").tobytes() + np.asarray(scaled, "<i2").tobytes()
    return ARRAYS_MAGIC + zlib.compress(struct.pack("<I", len(header)) + header + arrays)


def test_a_dead_feature_and_older_payloads_still_read():
    dead = {**_feature(np.random.default_rng(0), 1.0), "max": 0.0, "top": [], "quantiles": [], "n_firing": 0}
    assert pack_feature(dead, TokenStrings(_decoded), {"pos": [], "neg": []}).data["strings"] == []
    legacy = {"top": [{"t": [0], "v": [0.5], "c": 0, "x": 0.5, "s": 1, "p": 2}], "quantiles": [], "strings": ["a"]}
    payload = FeatureDashboard.pack(legacy)
    assert payload == zlib.compress(json.dumps(legacy, separators=(",", ":")).encode(), 1)
    assert FeatureDashboard(payload=payload).data == legacy
    top = [{"n": 2, "c": 1, "x": 0.25, "s": 4, "p": 7}]
    quantiles = [{"lo": 0.1, "hi": 0.3, "count": 9, "examples": [{"n": 1, "c": 0, "x": 0.125, "s": 5, "p": 0}]}]
    lsa1 = _legacy_lsa1({"top": top, "quantiles": quantiles, "strings": ["a", "b"]}, [1, 0, 1], [120, 250, 125], 3)
    assert FeatureDashboard(payload=lsa1).data == {
        "top": [{"c": 1, "x": 0.25, "s": 4, "p": 7, "t": [1, 0], "v": [0.12, 0.25]}],
        "quantiles": [{"lo": 0.1, "hi": 0.3, "count": 9, "examples": [{"c": 0, "x": 0.125, "s": 5, "p": 0, "t": [1], "v": [0.125]}]}],
        "strings": ["a", "b"],
    }  # fmt: skip


def test_token_strings_decode_each_id_once_and_grow():
    calls: list[list[int]] = []

    def decode(ids: list[int]) -> list[str]:
        calls.append(ids)
        return [f"s{i}" for i in ids]

    strings = TokenStrings(decode)
    assert strings(np.array([5, 2, 5])) == ["s5", "s2", "s5"]
    assert strings(np.array([2, 70_000, 5])) == ["s2", "s70000", "s5"]
    assert strings(np.array([], dtype=np.int64)) == []
    assert calls == [[2, 5], [70_000]]
