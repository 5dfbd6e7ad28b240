"""Typed readers for environment variables: the only place settings touch os.environ."""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no or on/off.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def env_json(name: str, default: dict) -> dict:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object.")
    return value


def env_database(name: str, default: str, *, conn_max_age: int) -> dict:
    """A Django DATABASES entry from a URL such as postgres://user:pass@host:5432/db or sqlite:///path."""
    import dj_database_url

    raw = os.environ.get(name) or default
    try:
        config = dj_database_url.parse(raw, conn_max_age=conn_max_age)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a database URL ({exc}); expected e.g. postgres://user:pass@host:5432/db"
        ) from None
    if not config.get("ENGINE"):
        raise ImproperlyConfigured(f"{name}={raw!r} names no database engine Django knows.")
    return config


BROKER_SCHEMES = ("filesystem://", "redis://", "rediss://", "amqp://", "pyamqp://", "sqs://")


def env_broker(name: str, default: str) -> str:
    raw = os.environ.get(name) or default
    if not raw.startswith(BROKER_SCHEMES):
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a broker URL we support; use one of {', '.join(BROKER_SCHEMES)}"
        )
    return raw
