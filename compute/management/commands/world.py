"""`python manage.py world add NAME --general-features 2048 --domain-features 256 ...`: build a synthetic world
(sae-lens synthetic data with known true features) and register it as a model with a general and a domain corpus."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from compute.jobs import JobInputError
from compute.ml.config import ConfigError, SyntheticWorldConfig
from compute.services.worlds import world_register

from ._options import add_config_arguments, config_params


class Command(BaseCommand):
    help = "Build and register a synthetic world: a model whose true features are known, and its two corpora."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="build (or rebuild) a world by name")
        add.add_argument("name")
        add_config_arguments(add, SyntheticWorldConfig)

    def handle(self, *args, action: str, **o) -> None:
        try:
            config = SyntheticWorldConfig.from_params(config_params(o, SyntheticWorldConfig))
            model, corpora = world_register(name=o["name"], config=config)
        except (ConfigError, JobInputError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Registered synthetic world {model.name!r}: {config.general_features:,} general and "
            f"{config.domain_features:,} domain features in {config.hidden_dim} dimensions, hook {model.default_hook}; "
            f"corpora {', '.join(c.name for c in corpora)}."
        )
