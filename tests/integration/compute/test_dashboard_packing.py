"""Stored dashboards: per-token arrays packed as integers read back as the lists the JSON format stored."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from compute.models import FeatureDashboard
from compute.models.dashboards import ARRAYS_MAGIC
from compute.services.dashboard_build import TokenStrings, pack_feature


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
    return {"index": 3, "n_firing": 40, "frequency": 0.01, "max": peak, "mean": peak / 3,
            "histogram": {"lo": 0.0, "hi": peak, "counts": [1, 2, 3]}, "top": top, "quantiles": quantiles}  # fmt: skip


def _decoded(ids) -> list[str]:
    return [f"<{t}>" for t in ids]


@pytest.mark.parametrize(("peak", "negative"), [(3.7, False), (0.00123, False), (54_321.0, False), (2.5, True)])
def test_packed_arrays_read_back_as_the_json_format_stored_them(peak, negative):
    feature = _feature(np.random.default_rng(int(peak * 7)), peak, negative=negative)
    row = pack_feature(feature, TokenStrings(_decoded), {"pos": [["a", 1.0]], "neg": []})
    assert bytes(row.payload).startswith(ARRAYS_MAGIC)
    data = row.data
    decimals = max(0, 3 - math.floor(math.log10(peak)))
    examples = feature["top"] + [ex for q in feature["quantiles"] for ex in q["examples"]]
    stored = data["top"] + [ex for q in data["quantiles"] for ex in q["examples"]]
    assert len(stored) == len(examples) == 7 + 0 + 1 + 2
    for ex, got in zip(examples, stored, strict=True):
        assert [data["strings"][i] for i in got["t"]] == [f"<{t}>" for t in ex["tokens"].tolist()]
        # what the JSON format stored: the values rounded to `decimals`, through a JSON round trip
        assert got["v"] == json.loads(json.dumps(np.round(ex["values"].astype(np.float64), decimals).tolist()))
        assert max(abs(a - b) for a, b in zip(got["v"], ex["values"].tolist(), strict=True)) <= 0.5 * 10**-decimals
        assert (got["c"], got["s"], got["p"]) == (ex["center"], ex["seq"], ex["pos"]) and "n" not in got
    seen = [t for ex in examples for t in ex["tokens"].tolist()]
    assert data["strings"] == [f"<{t}>" for t in dict.fromkeys(seen)]  # by first appearance, each once
    assert [(q["count"], len(q["examples"])) for q in data["quantiles"]] == [(10, 0), (11, 1), (12, 2)]
    assert data["logits"] == {"pos": [["a", 1.0]], "neg": []} and data["histogram"]["counts"] == [1, 2, 3]


def test_a_dead_feature_and_a_json_payload_still_read():
    dead = {**_feature(np.random.default_rng(0), 1.0), "max": 0.0, "top": [], "quantiles": [], "n_firing": 0}
    assert pack_feature(dead, TokenStrings(_decoded), {"pos": [], "neg": []}).data["strings"] == []
    legacy = {"top": [{"t": [0], "v": [0.5], "c": 0, "x": 0.5, "s": 1, "p": 2}], "quantiles": [], "strings": ["a"]}
    payload = FeatureDashboard.pack(legacy)
    assert payload == zlib.compress(json.dumps(legacy, separators=(",", ":")).encode(), 1)
    assert FeatureDashboard(payload=payload).data == legacy


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
