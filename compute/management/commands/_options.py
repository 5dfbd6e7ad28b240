"""Command-line options derived from a job config (compute.ml.config): one flag per option, same defaults and help."""

from __future__ import annotations

import argparse
from typing import Any

from compute.ml.config import JobConfig, options_of


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type[JobConfig], **aliases: str) -> None:
    """`--gsae-tokens 1000`, `--methods gsae direct`, ... for every option; `aliases` adds short names (name -> flag)."""
    for opt in options_of(config_class):
        flags = [opt.cli_flag] + ([aliases[opt.name]] if opt.name in aliases else [])
        kwargs: dict[str, Any] = {"dest": opt.name, "default": None, "help": f"{opt.help} (default: {_show(opt)})"}
        if opt.many:
            kwargs["nargs"] = "+"
        if opt.choices:
            kwargs["choices"] = opt.choices
        elif opt.type in (int, float):
            kwargs["type"] = opt.type
        parser.add_argument(*flags, **kwargs)


def config_params(options: dict[str, Any], config_class: type[JobConfig]) -> dict[str, Any]:
    """The options given on the command line (None: not given, so the config's default applies)."""
    return {opt.name: options[opt.name] for opt in options_of(config_class) if options.get(opt.name) is not None}


def _show(opt) -> str:
    if opt.many:
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in opt.default)
    return repr(opt.default) if opt.default == "" else str(opt.default)
