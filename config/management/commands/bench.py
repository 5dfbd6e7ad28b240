"""`python manage.py bench NAME [--option value ...]`: run one benchmark and print one JSON object."""

from __future__ import annotations

import json
import platform

import psutil
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_module, module_has_submodule


def registered_benchmarks() -> dict[str, str]:
    """Each app lists its own benchmarks in `<app>.benchmarks.BENCHMARKS` (name -> module path)."""
    found: dict[str, str] = {}
    for app in apps.get_app_configs():
        if module_has_submodule(app.module, "benchmarks"):
            found.update(getattr(import_module(f"{app.name}.benchmarks"), "BENCHMARKS", {}))
    return found


class Command(BaseCommand):
    help = "Run a benchmark (each app registers its own) and print its figures as one JSON object."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", choices=sorted(registered_benchmarks()))
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Override a benchmark parameter (repeatable), e.g. --set tokens=4096.",
        )

    def handle(self, *args, name: str, set: list[str], **options) -> None:
        overrides: dict[str, object] = {}
        for item in set:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--set expects KEY=VALUE, got {item!r}")
            try:
                overrides[key] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key] = value
        module = import_module(registered_benchmarks()[name])
        figures = module.run(**overrides)
        figures["machine"] = {
            "cpu": platform.processor() or platform.machine(),
            "cores": psutil.cpu_count(logical=True),
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        }
        self.stdout.write(json.dumps(figures, indent=2, default=str))
