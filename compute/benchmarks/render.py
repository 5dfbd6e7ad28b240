"""`python manage.py bench render`: how long one full-size feature dashboard takes to render as HTML.

A full-size dashboard is what a real SmolLM2 build stores for one feature: 20 top examples and 10 activation
bins x 5 samples, 33 tokens each (2,310 coloured tokens), a 30-bin histogram and 10 + 10 logits. The row is
packed as the build packs it and rendered from memory as the blind and the admin partial (no database: the
figure is the template and token-run work a page view pays). Each variant is rendered `repeats` times,
interleaved; `blind_ms` / `admin_ms` are medians, `blind_best_ms` the best. The budget a page view can
afford is 100 ms (`within_budget`).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

DEFAULTS: dict[str, Any] = {"repeats": 15, "seed": 0}
BUDGET_MS = 100.0
TOP, BINS, PER_BIN, WIDTH = 20, 10, 5, 33


def full_size_feature(seed: int = 0) -> dict[str, Any]:
    """One feature as `compute.ml.dashboards` yields it, at the size of a real SmolLM2 dashboard."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def example(value: float) -> dict[str, Any]:
        return {
            "tokens": rng.integers(0, 259, WIDTH),
            "values": (rng.random(WIDTH) * value).astype(np.float32),
            "center": 24,
            "value": float(value),
            "seq": int(rng.integers(0, 1000)),
            "pos": 30,
        }

    return {
        "index": 0,
        "n_tokens": 1_200_000,
        "n_firing": 20_000,
        "frequency": 20_000 / 1_200_000,
        "max": 9.5,
        "mean": 2.1,
        "histogram": {"lo": 0.0, "hi": 9.5, "counts": rng.integers(0, 500, 30).tolist()},
        "top": [example(9.5 - i * 0.1) for i in range(TOP)],
        "quantiles": [
            {"lo": j, "hi": j + 0.9, "count": 2000, "examples": [example(j + 0.5) for _ in range(PER_BIN)]}
            for j in range(BINS)
        ],
    }


FULL_SIZE_TOKENS = (TOP + BINS * PER_BIN) * WIDTH
FULL_SIZE_LOGITS = {"pos": [[f"tok{i}", 1.0] for i in range(10)], "neg": [[f"neg{i}", -1.0] for i in range(10)]}


def full_size_row(seed: int = 0):
    """The packed, unsaved `FeatureDashboard` row of `full_size_feature`."""
    from compute.services.dashboard_build import pack_feature

    return pack_feature(
        full_size_feature(seed), lambda ids: [chr(32 + t % 90) * 3 for t in ids.tolist()], FULL_SIZE_LOGITS
    )


def run(**overrides: Any) -> dict[str, Any]:
    from django.template.loader import render_to_string

    from compute.models import SAE, Corpus, DashboardSet
    from compute.selectors.dashboard_html import TEMPLATE, dashboard_context

    opts = {**DEFAULTS, **overrides}
    row = full_size_row(int(opts["seed"]))
    dset = DashboardSet(
        sae=SAE(name="bench-sae", hook_name="blocks.3.hook_resid_post", method="direct"),
        corpus=Corpus(name="bench-corpus", kind="domain"),
        n_tokens=1_200_000,
        n_features=1,
        config={"top_k": TOP},
    )

    def render(blind: bool) -> tuple[float, str]:
        started = time.perf_counter()
        html = render_to_string(TEMPLATE, dashboard_context(dset=dset, row=row, blind=blind))
        return (time.perf_counter() - started) * 1000, html

    _, html = render(True)  # template compiled once
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(int(opts["repeats"])):
        for blind in (True, False):
            timings[blind].append(render(blind)[0])
    blind_ms = statistics.median(timings[True])
    return {
        "tokens": html.count('class="tok'),
        "html_kib": round(len(html.encode()) / 1024, 1),
        "blind_ms": round(blind_ms, 2),
        "blind_best_ms": round(min(timings[True]), 2),
        "admin_ms": round(statistics.median(timings[False]), 2),
        "budget_ms": BUDGET_MS,
        "within_budget": blind_ms <= BUDGET_MS,
        "repeats": int(opts["repeats"]),
    }
