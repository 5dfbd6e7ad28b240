"""`python manage.py bench export`: streaming exports and agreement statistics at 100,000 judgments.

A throwaway database (as `bench web` makes one) is seeded with two campaigns: 10,000 and 100,000
judgments (k = 4 judgments per item, 10 labellers). Each measurement runs in a fresh child process that
consumes the whole export stream (as a client downloading it would) and reports its wall time and peak
resident memory; `peak_rss_ratio_100k_over_10k` compares the peaks of the two sizes (≤ 1.1: memory does
not grow with the row count). The pairs of runs are interleaved and repeated; the best of each is kept.
`agreement_s` is Krippendorff's alpha with its bootstrap interval plus the pairwise kappa matrix for every
score question of the 100,000-judgment campaign, including reading the judgments.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULTS: dict[str, object] = {
    "judgments": 100_000,
    "small_judgments": 10_000,
    "per_item": 4,
    "labellers": 10,
    "repeats": 2,
}
ROOT = Path(__file__).resolve().parents[2]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _child(argv: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "labelsite.benchmarks.export", *argv],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_seed(params: dict) -> dict:
    from labelsite.benchmarks.seed import seed_labelling_load

    out = {}
    for key in ("small_judgments", "judgments"):
        n = int(params[key])
        seeded = seed_labelling_load(
            items=n // int(params["per_item"]),
            judgments=n,
            seed_labellers=int(params["labellers"]),
            load_labellers=0,
            panel_examples=1,
            name=f"Export {n}",
        )
        out[key] = seeded["campaign_id"]
    return out


def child_export(campaign_id: int, fmt: str) -> dict:
    from labelsite.models import Campaign
    from labelsite.selectors.exports import export_stream

    campaign = Campaign.objects.get(pk=campaign_id)
    if fmt == "parquet":
        import pyarrow.parquet  # noqa: F401  (imported before the baseline, as a warm server has it)
    baseline = _peak_rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    size = 0
    for chunk in export_stream(campaign=campaign, fmt=fmt):
        size += len(chunk)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "bytes": size,
        "peak_rss_mib": _peak_rss_mib(),
        "rss_before_mib": baseline,
    }


def child_agreement(campaign_id: int) -> dict:
    # Imported before timing, as in a running server: a cold scikit-learn import alone takes seconds.
    import krippendorff  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.metrics  # noqa: F401

    from labelsite.models import Campaign, Judgment
    from labelsite.selectors.results import AGREEMENT_RESAMPLES, _agreement, judgment_table

    campaign = Campaign.objects.get(pk=campaign_id)
    started, cpu_started = time.perf_counter(), time.process_time()
    table = judgment_table(campaign=campaign)
    names = {uid: str(uid) for uid in set(table.labeller.tolist())}
    sections = [
        _agreement(table, q, names, n_resamples=AGREEMENT_RESAMPLES, seed=0)
        for q in campaign.questions
        if q["type"] == "score"
    ]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "judgments": Judgment.objects.filter(campaign=campaign).count(),
        "alpha": {s["key"]: s["alpha"]["alpha"] for s in sections},
        "pairs": sum(len(s["pairs"]) for s in sections),
    }


def run(**overrides) -> dict:
    from labelsite.benchmarks.web import _throwaway_database

    params = {**DEFAULTS, **overrides}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    with _throwaway_database() as database_url:
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        ids = _child(["seed", json.dumps(params)], env)
        setup_s = time.perf_counter() - started
        best: dict[tuple[str, str], dict] = {}
        for _ in range(int(params["repeats"])):
            for fmt in ("csv", "parquet"):
                for size in ("small_judgments", "judgments"):  # interleaved: small, large, small, large
                    got = _child(["export", str(ids[size]), fmt], env)
                    key = (fmt, size)
                    if key not in best:
                        best[key] = got
                    else:
                        best[key]["seconds"] = min(best[key]["seconds"], got["seconds"])
                        best[key]["cpu_s"] = min(best[key]["cpu_s"], got["cpu_s"])
                        best[key]["peak_rss_mib"] = min(best[key]["peak_rss_mib"], got["peak_rss_mib"])
        agreement = min(
            (_child(["agreement", str(ids["judgments"])], env) for _ in range(int(params["repeats"]))),
            key=lambda r: r["seconds"],
        )
    ratios = {
        fmt: best[(fmt, "judgments")]["peak_rss_mib"] / best[(fmt, "small_judgments")]["peak_rss_mib"]
        for fmt in ("csv", "parquet")
    }
    return {
        "benchmark": "export",
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "rows": int(params["judgments"]),
        "csv_s": round(best[("csv", "judgments")]["seconds"], 3),
        "parquet_s": round(best[("parquet", "judgments")]["seconds"], 3),
        "peak_rss_ratio_100k_over_10k": round(max(ratios.values()), 3),
        "agreement_s": round(agreement["seconds"], 3),
        "detail": {
            # CPU seconds of the same runs: what the wall times would be on an otherwise idle core
            "csv_cpu_s": round(best[("csv", "judgments")]["cpu_s"], 3),
            "parquet_cpu_s": round(best[("parquet", "judgments")]["cpu_s"], 3),
            "agreement_cpu_s": round(agreement["cpu_s"], 3),
            "csv_mib": round(best[("csv", "judgments")]["bytes"] / 2**20, 1),
            "parquet_mib": round(best[("parquet", "judgments")]["bytes"] / 2**20, 1),
            "peak_rss_mib": {f"{fmt}_{size}": round(r["peak_rss_mib"], 1) for (fmt, size), r in best.items()},
            "peak_rss_ratio": {fmt: round(r, 3) for fmt, r in ratios.items()},
            "small_rows": int(params["small_judgments"]),
            "agreement_judgments": agreement["judgments"],
            "agreement_alpha": agreement["alpha"],
            "agreement_pairs": agreement["pairs"],
            "setup_s": round(setup_s, 1),
        },
    }


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    command, *args = sys.argv[1:]
    if command == "seed":
        result = child_seed(json.loads(args[0]))
    elif command == "export":
        result = child_export(int(args[0]), args[1])
    elif command == "agreement":
        result = child_agreement(int(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))
