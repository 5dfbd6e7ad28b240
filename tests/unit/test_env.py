"""Wrong settings fail at start-up with a message naming the variable and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env


def test_bool_accepts_common_spellings(monkeypatch):
    for raw, expected in [("1", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("", False)]:
        monkeypatch.setenv("X_FLAG", raw)
        assert env.env_bool("X_FLAG", not expected) is expected


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        env.env_bool("X_FLAG", False)
    monkeypatch.setenv("X_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_INT='ten' is not an integer"):
        env.env_int("X_INT", 1)
    monkeypatch.setenv("X_JSON", "[1, 2]")
    with pytest.raises(ImproperlyConfigured, match="must be a JSON object"):
        env.env_json("X_JSON", {})


def test_list_and_path(monkeypatch, tmp_path):
    monkeypatch.setenv("X_LIST", " a.org, ,b.org ")
    assert env.env_list("X_LIST", []) == ["a.org", "b.org"]
    monkeypatch.setenv("X_PATH", str(tmp_path / "x" / ".." / "y"))
    assert env.env_path("X_PATH", Path("/nope")) == tmp_path / "y"


def test_database_url_postgres_and_errors(monkeypatch):
    monkeypatch.setenv("X_DB", "postgres://u:p@db.example:5433/labels")
    config = env.env_database("X_DB", "sqlite:///x.sqlite3", conn_max_age=5)
    assert (config["ENGINE"], config["HOST"], config["PORT"], config["NAME"]) == (
        "django.db.backends.postgresql",
        "db.example",
        5433,
        "labels",
    )
    monkeypatch.setenv("X_DB", "mongo://host/db")
    with pytest.raises(ImproperlyConfigured, match="X_DB='mongo://host/db'"):
        env.env_database("X_DB", "sqlite:///x.sqlite3", conn_max_age=5)


def test_broker_url(monkeypatch):
    monkeypatch.delenv("X_BROKER", raising=False)
    assert env.env_broker("X_BROKER", "filesystem://") == "filesystem://"
    monkeypatch.setenv("X_BROKER", "localhost:6379")
    with pytest.raises(ImproperlyConfigured, match="is not a broker URL"):
        env.env_broker("X_BROKER", "filesystem://")
