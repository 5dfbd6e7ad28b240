"""Feature dashboards: one DashboardSet per SAE x corpus, one compact row per feature."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any

from django.db import models


class DashboardSet(models.Model):
    """The dashboards of every feature of one SAE on one corpus, built by one job."""

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    sae = models.ForeignKey("compute.SAE", on_delete=models.CASCADE, related_name="dashboard_sets")
    corpus = models.ForeignKey("compute.Corpus", on_delete=models.PROTECT, related_name="dashboard_sets")
    job = models.ForeignKey(
        "compute.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="dashboard_sets"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BUILDING, db_index=True)
    config = models.JSONField(default=dict, blank=True, help_text="k, context, bins, token budget used.")
    n_tokens = models.BigIntegerField(default=0, help_text="Tokens scored (BOS, special and padding excluded).")
    n_features = models.PositiveIntegerField(default=0)
    n_dead = models.PositiveIntegerField(default=0, help_text="Features that never fired on this corpus.")
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["sae", "corpus"], name="dashboardset_one_per_sae_corpus")]

    def __str__(self) -> str:
        return f"Dashboards of {self.sae_id} on {self.corpus_id} ({self.status})"


# Binary payloads start with a magic (a zlib stream, the JSON-only payloads of `pack`, never does):
# LSA2 (`examples_body` in zstd, what builds write) and LSA1 (per-token arrays only in zlib, earlier builds).
EXAMPLES_MAGIC = b"LSA2"
ARRAYS_MAGIC = b"LSA1"
# One record per example in an LSA2 payload: window length, peak index, corpus position, value (float32).
EXAMPLE_RECORD = [("n", "<u2"), ("c", "<u2"), ("s", "<u4"), ("p", "<u4"), ("x", "<f4")]


def round4(value: float) -> float:
    """Four significant digits: plenty for highlighting, and JSON stays short."""
    return float(f"{value:.4g}") if value else 0


_ZSTD = threading.local()


def _zstd() -> threading.local:
    """This thread's zstd compressor and decompressor (reused: a new one costs more than compressing a row)."""
    if not hasattr(_ZSTD, "compressor"):
        import zstandard

        _ZSTD.compressor, _ZSTD.decompressor = zstandard.ZstdCompressor(level=1), zstandard.ZstdDecompressor()
    return _ZSTD


def stored_examples(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every example of a dashboard (stored, or as compute.ml.dashboards yields it) in stored order: the top
    ones, then each quantile bin's samples."""
    yield from data["top"]
    for q in data["quantiles"]:
        yield from q["examples"]


def _header(body: bytes) -> tuple[dict[str, Any], int]:
    (n_header,) = struct.unpack_from("<I", body)
    return json.loads(body[4 : 4 + n_header]), 4 + n_header


def _token_lists(body: bytes, offset: int, n: int, ids: str, values: str, decimals: int) -> tuple[list, list]:
    import numpy as np

    token_ids = np.frombuffer(body, dtype=ids, count=n, offset=offset)
    scaled = np.frombuffer(body, dtype=values, count=n, offset=offset + token_ids.nbytes)
    return token_ids.tolist(), (scaled / 10.0**decimals).tolist()


def _unpack_arrays(body: bytes) -> dict[str, Any]:
    """LSA1: examples in the JSON header with their length "n"; ids and scaled values after it."""
    data, offset = _header(body)
    spec = data.pop("_arrays")
    ids_l, values_l = _token_lists(body, offset, spec["n"], spec["ids"], spec["values"], spec["decimals"])
    start = 0
    for ex in stored_examples(data):
        end = start + ex.pop("n")
        ex["t"], ex["v"] = ids_l[start:end], values_l[start:end]
        start = end
    return data


def _unpack_examples(body: bytes) -> dict[str, Any]:
    """LSA2: example records, then token ids, then scaled values, all after the JSON header."""
    import numpy as np

    data, offset = _header(body)
    spec = data.pop("_arrays")
    records = np.frombuffer(body, dtype=EXAMPLE_RECORD, count=spec["examples"], offset=offset)
    offset += records.nbytes
    ids_l, values_l = _token_lists(body, offset, spec["n"], spec["ids"], spec["values"], spec["decimals"])
    examples, start = [], 0
    for n, c, s, p, x in records.tolist():
        examples.append({"c": c, "x": round4(x), "s": s, "p": p, "t": ids_l[start : start + n], "v": values_l[start : start + n]})  # fmt: skip
        start += n
    n_top = data.pop("n_top")
    data["top"], start = examples[:n_top], n_top
    for q in data["quantiles"]:
        k = q.pop("k")
        q["examples"], start = examples[start : start + k], start + k
    return data


class FeatureDashboard(models.Model):
    """One feature's dashboard: queryable figures as columns, the rest one compressed payload (`examples_body`)."""

    dashboard_set = models.ForeignKey(DashboardSet, on_delete=models.CASCADE, related_name="features")
    feature_index = models.PositiveIntegerField()
    n_firing = models.BigIntegerField(default=0)
    frequency = models.FloatField(default=0.0)
    max_activation = models.FloatField(default=0.0)
    payload = models.BinaryField(help_text="Contexts, samples, histogram, logits, compressed: see `examples_body`.")

    class Meta:
        ordering = ["dashboard_set", "feature_index"]
        constraints = [
            models.UniqueConstraint(fields=["dashboard_set", "feature_index"], name="featuredashboard_unique_index")
        ]

    def __str__(self) -> str:
        return f"Feature {self.feature_index} of set {self.dashboard_set_id}"

    @staticmethod
    def pack(data: dict[str, Any]) -> bytes:
        # Level 1: a build packs every feature of an SAE; level 6 took 2.4x as long for 12% fewer bytes.
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)

    @staticmethod
    def examples_body(header: dict[str, Any], records: bytes, ids, scaled, decimals: int) -> bytes:
        """The uncompressed stored form (LSA2) of a dashboard (`compress_body` makes it the payload): `header`
        (JSON: "n_top", quantiles with their example count "k", histogram, mean, logits, strings), then binary.

        `records` are the examples in stored order (`stored_examples`) as `EXAMPLE_RECORD`s; `ids` (token ids
        into header["strings"]) and `scaled` (per-token values times 10**decimals, rounded to integers) hold
        their windows one after another, as little-endian integers. `data` returns the dict `pack` stores.
        """
        import numpy as np

        ids = np.asarray(ids, dtype="<u2" if len(header["strings"]) <= 1 << 16 else "<u4")
        small = scaled.size == 0 or (scaled.min() >= -(1 << 15) and scaled.max() < 1 << 15)
        scaled = np.asarray(scaled, dtype="<i2" if small else "<i4")
        n_examples = len(records) // np.dtype(EXAMPLE_RECORD).itemsize
        spec = {"examples": n_examples, "n": int(ids.size), "ids": ids.dtype.str, "values": scaled.dtype.str}
        head = json.dumps({**header, "_arrays": {**spec, "decimals": decimals}}, separators=(",", ":")).encode()
        return b"".join([struct.pack("<I", len(head)), head, records, ids.tobytes(), scaled.tobytes()])

    @staticmethod
    def compress_body(body: bytes) -> bytes:
        """An `examples_body` as stored: the magic, then zstd level 1 (5x faster than zlib level 1 on these
        bodies for the same size, and decompresses 2x faster)."""
        return EXAMPLES_MAGIC + _zstd().compressor.compress(body)

    @property
    def data(self) -> dict[str, Any]:
        payload = bytes(self.payload)
        if payload.startswith(EXAMPLES_MAGIC):
            return _unpack_examples(_zstd().decompressor.decompress(payload[len(EXAMPLES_MAGIC) :]))
        if payload.startswith(ARRAYS_MAGIC):
            return _unpack_arrays(zlib.decompress(payload[len(ARRAYS_MAGIC) :]))
        return json.loads(zlib.decompress(payload))
