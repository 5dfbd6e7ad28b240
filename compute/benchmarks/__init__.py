"""Compute benchmarks behind `python manage.py bench NAME`: each module's `run(**options) -> dict` prints as JSON.

A benchmark measures ratios within one run (machines are noisy) and never asserts; docs/benchmarks.md
quotes its figures with the machine they came from.
"""

BENCHMARKS: dict[str, str] = {
    "train": "compute.benchmarks.train",
    "quality": "compute.benchmarks.quality",
    "dashboards": "compute.benchmarks.dashboards",
    "eval": "compute.benchmarks.eval",
    "autointerp": "compute.benchmarks.autointerp",
    "probe": "compute.benchmarks.probe",
    "render": "compute.benchmarks.render",
    "synthetic": "compute.benchmarks.synthetic",
}
