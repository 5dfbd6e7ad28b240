"""Fail fast when the Hugging Face Hub is needed but cannot be reached (instead of minutes of retries)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub endpoint (HF_ENDPOINT) opens within timeout_s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_file_cached(repo_id: str, filename: str, *, repo_type: str = "model") -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename, repo_type=repo_type), str)
    except (HFValidationError, ValueError):  # not even a valid repo id: certainly not cached
        return False


def hub_problem(repo_id: str, *, what: str, cached_file: str = "config.json", repo_type: str = "model") -> str | None:
    """None when `repo_id` can be loaded from the local cache or the Hub; else a message saying what to do."""
    if hub_file_cached(repo_id, cached_file, repo_type=repo_type):
        return None
    if hub_reachable():
        return None
    return (
        f"{what} {repo_id!r} is not in the local Hugging Face cache and the Hub cannot be reached from this machine: "
        "register it by local path (or package), or run where the Hub is reachable."
    )
