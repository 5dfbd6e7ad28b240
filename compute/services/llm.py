"""The configured LLM client and recorded calls (every prompt and raw answer is stored as an LLMCall).

Importable by the web process: compute.ml.llm needs only httpx and jsonschema; the local model's torch and
transformers are imported on its first call, inside the worker.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from compute.ml.llm import (
    ChatClient,
    Completion,
    LLMBadAnswer,
    LLMError,
    LocalInstructClient,
    OpenAICompatibleClient,
)
from compute.models import Job, LLMCall

_clients: dict[tuple, ChatClient] = {}
_clients_lock = threading.Lock()


def llm_settings() -> dict[str, Any]:
    """The LLM settings as one dict (the API key as a flag only: safe to show on a page or in a job)."""
    return {
        "base_url": settings.LLM_BASE_URL,
        "model": settings.LLM_MODEL if settings.LLM_BASE_URL else f"local:{settings.LLM_LOCAL_PACKAGE}",
        "api_key_set": bool(settings.LLM_API_KEY),
        "timeout_s": settings.LLM_TIMEOUT_S,
        "retries": settings.LLM_RETRIES,
        "max_concurrency": settings.LLM_MAX_CONCURRENCY,
        "json_mode": settings.LLM_JSON_MODE,
    }


def llm_client() -> ChatClient:
    """The client the settings describe: an OpenAI-compatible endpoint, or the local instruct model when
    LLM_BASE_URL is empty. One client per configuration and process, so its concurrency limit is shared and
    the local model stays loaded between calls."""
    key = (
        settings.LLM_BASE_URL,
        settings.LLM_API_KEY,
        settings.LLM_MODEL,
        settings.LLM_TIMEOUT_S,
        settings.LLM_RETRIES,
        settings.LLM_MAX_CONCURRENCY,
        settings.LLM_JSON_MODE,
        settings.LLM_BACKOFF_S,
        settings.LLM_LOCAL_PACKAGE,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if settings.LLM_BASE_URL:
                client = OpenAICompatibleClient(
                    settings.LLM_BASE_URL,
                    settings.LLM_API_KEY,
                    settings.LLM_MODEL,
                    timeout_s=settings.LLM_TIMEOUT_S,
                    retries=settings.LLM_RETRIES,
                    max_concurrency=settings.LLM_MAX_CONCURRENCY,
                    backoff_s=settings.LLM_BACKOFF_S,
                    json_mode=settings.LLM_JSON_MODE,
                )
            else:
                client = LocalInstructClient(
                    source="package", location=settings.LLM_LOCAL_PACKAGE, retries=settings.LLM_RETRIES
                )
            _clients[key] = client
        return client


def llm_complete(
    *,
    purpose: str,
    messages: list[dict],
    max_tokens: int,
    temperature: float,
    json_schema: dict | None = None,
    job: Job | None = None,
    client: ChatClient | None = None,
) -> tuple[Completion, LLMCall]:
    """Ask the configured (or given) client and store the call's provenance, failed calls included.

    Raises the client's LLMError after recording it; the stored record never holds the API key.
    """
    client = client or llm_client()
    try:
        completion = client.complete(messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema)
    except LLMError as exc:
        LLMCall.objects.create(
            purpose=purpose,
            model=getattr(client, "model", ""),
            messages=messages,
            params={"max_tokens": max_tokens, "temperature": temperature, "json_schema": json_schema is not None},
            attempts=exc.attempts if isinstance(exc, LLMBadAnswer) else [],
            error=str(exc),
            job=job,
        )
        raise
    call = LLMCall.objects.create(
        purpose=purpose,
        model=completion.model,
        messages=completion.messages,
        params=completion.params,
        text=completion.text,
        raw=completion.raw,
        data=completion.data,
        attempts=completion.attempts,
        latency_s=completion.latency_s,
        job=job,
    )
    return completion, call
