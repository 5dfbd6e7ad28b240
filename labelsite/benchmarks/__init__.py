"""Web-product benchmarks behind `python manage.py bench NAME` (see config/management/commands/bench.py)."""

BENCHMARKS: dict[str, str] = {
    "web": "labelsite.benchmarks.web",
    "export": "labelsite.benchmarks.export",
    "ppi": "labelsite.benchmarks.ppi",
}
