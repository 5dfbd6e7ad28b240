"""The OpenAI-compatible client against a real HTTP server on loopback (tests/llm_server.py)."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from compute.ml.llm import (
    LLMBadAnswer,
    LLMUnavailable,
    OpenAICompatibleClient,
    extract_json,
    validate_json_answer,
)
from tests.llm_server import (
    GARBAGE,
    NOT_JSON_BODY,
    PARTIAL,
    Reply,
    good,
    rate_limited,
    server_error,
    slow,
)

KEY = "sk-test-SECRET-0123456789"
SCHEMA = {
    "type": "object",
    "required": ["components"],
    "properties": {
        "components": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "phrases"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "phrases": {"type": "array", "minItems": 3, "items": {"type": "string"}},
                },
            },
        }
    },
}
ANSWER = {"components": [{"name": "physics", "phrases": ["E = mc^2", "quantum theory", "the speed of light"]}]}
MESSAGES = [{"role": "system", "content": "You decompose concepts."}, {"role": "user", "content": "Einstein"}]


def client_for(url: str, **kwargs) -> OpenAICompatibleClient:
    options = {"timeout_s": 5.0, "retries": 2, "max_concurrency": 4, "backoff_s": 0.01, **kwargs}
    return OpenAICompatibleClient(url, KEY, "test-model", **options)


def test_good_answer_is_parsed_and_the_request_is_what_the_endpoint_expects(llm_server):
    llm_server.reply(good(ANSWER))
    completion = client_for(llm_server.base_url).complete(MESSAGES, max_tokens=300, temperature=0.2, json_schema=SCHEMA)
    assert completion.data == ANSWER
    assert completion.model == "test-model"
    assert completion.attempts == []
    [request] = llm_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = request["json"]
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 300 and body["temperature"] == 0.2
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    # The schema note is added to the caller's system message; the user message is untouched.
    assert body["messages"][0]["content"].startswith("You decompose concepts.")
    assert '"minItems":3' in body["messages"][0]["content"]
    assert body["messages"][1] == MESSAGES[1]
    assert completion.messages == body["messages"]
    assert completion.raw["choices"][0]["message"]["content"] == json.dumps(ANSWER)


@pytest.mark.parametrize("bad", [GARBAGE, PARTIAL, good({"components": [{"name": "x", "phrases": ["only one"]}]})])
def test_a_bad_answer_is_asked_again_with_the_reason(llm_server, bad):
    llm_server.reply(bad, good(ANSWER))
    completion = client_for(llm_server.base_url).complete(MESSAGES, max_tokens=300, temperature=0.0, json_schema=SCHEMA)
    assert completion.data == ANSWER
    assert len(llm_server.requests) == 2
    [rejected] = completion.attempts
    assert rejected["text"] == bad.content
    retry_messages = llm_server.requests[1]["json"]["messages"]
    assert retry_messages[-2] == {"role": "assistant", "content": bad.content}
    assert "not valid" in retry_messages[-1]["content"]


def test_bad_answers_every_time_raise_bad_answer_keeping_every_attempt(llm_server):
    llm_server.default = GARBAGE
    with pytest.raises(LLMBadAnswer, match="no valid JSON in 3 tries") as info:
        client_for(llm_server.base_url, retries=2).complete(MESSAGES, max_tokens=50, temperature=0, json_schema=SCHEMA)
    assert len(llm_server.requests) == 3
    assert [a["text"] for a in info.value.attempts] == [GARBAGE.content] * 3


def test_429_waits_for_retry_after(llm_server):
    llm_server.reply(rate_limited("1"), good(ANSWER))
    completion = client_for(llm_server.base_url).complete(MESSAGES, max_tokens=50, temperature=0, json_schema=SCHEMA)
    assert completion.data == ANSWER
    first, second = llm_server.requests
    assert second["at"] - first["at"] >= 0.95  # backoff alone would be ~0.01 s


def test_429_asking_for_too_long_a_wait_fails_at_once(llm_server):
    llm_server.reply(rate_limited("3600"))
    with pytest.raises(LLMUnavailable, match="rate limiting"):
        client_for(llm_server.base_url).complete(MESSAGES, max_tokens=50, temperature=0)
    assert len(llm_server.requests) == 1


def test_server_errors_are_retried_then_succeed(llm_server):
    llm_server.reply(server_error(503), NOT_JSON_BODY, good(ANSWER))
    completion = client_for(llm_server.base_url, retries=2).complete(
        MESSAGES, max_tokens=50, temperature=0, json_schema=SCHEMA
    )
    assert completion.data == ANSWER
    assert len(llm_server.requests) == 3


def test_server_errors_beyond_the_retries_make_it_unavailable(llm_server):
    llm_server.default = server_error(500)
    with pytest.raises(LLMUnavailable, match="failed 2 times: server error 500"):
        client_for(llm_server.base_url, retries=1).complete(MESSAGES, max_tokens=50, temperature=0)
    assert len(llm_server.requests) == 2


def test_slow_answers_time_out_and_are_retried(llm_server):
    llm_server.default = slow(2.0, ANSWER)
    with pytest.raises(LLMUnavailable, match=r"no answer within 0.3 s"):
        client_for(llm_server.base_url, timeout_s=0.3, retries=1).complete(MESSAGES, max_tokens=50, temperature=0)
    assert len(llm_server.requests) == 2


def test_endpoint_down(llm_down_url):
    with pytest.raises(LLMUnavailable, match="cannot connect"):
        client_for(llm_down_url, retries=1).complete(MESSAGES, max_tokens=50, temperature=0)


def test_refused_request_is_not_retried_and_the_key_is_redacted(llm_server, caplog):
    # A careless endpoint echoing the key in its error must not leak it into our message.
    llm_server.reply(Reply(status=401, body=json.dumps({"error": f"bad key {KEY}"}).encode()))
    with pytest.raises(LLMUnavailable) as info:
        client_for(llm_server.base_url).complete(MESSAGES, max_tokens=50, temperature=0)
    assert len(llm_server.requests) == 1
    assert "401" in str(info.value) and "LLM_API_KEY" in str(info.value)
    assert KEY not in str(info.value)


def test_key_never_in_repr_completion_or_logs(llm_server, caplog):
    caplog.set_level(logging.DEBUG)
    llm_server.reply(GARBAGE, server_error(503), good(ANSWER))
    client = client_for(llm_server.base_url)
    completion = client.complete(MESSAGES, max_tokens=50, temperature=0, json_schema=SCHEMA)
    assert KEY not in repr(client)
    assert KEY not in json.dumps(completion.provenance())
    assert caplog.records, "retries are logged"
    assert all(KEY not in record.getMessage() for record in caplog.records)


def test_concurrency_limit_holds_across_threads(llm_server):
    llm_server.default = slow(0.3, ANSWER)
    client = client_for(llm_server.base_url, max_concurrency=2)
    threads = [
        threading.Thread(target=client.complete, args=(MESSAGES,), kwargs={"max_tokens": 5, "temperature": 0})
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(llm_server.requests) == 6
    assert llm_server.max_in_flight == 2


def test_wrong_route_is_a_clear_error(llm_server):
    client = OpenAICompatibleClient(llm_server.base_url.removesuffix("/v1"), KEY, "m", retries=0)
    with pytest.raises(LLMUnavailable, match="404"):
        client.complete(MESSAGES, max_tokens=5, temperature=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n{"a": [1, 2]}\n```\nEnjoy!', {"a": [1, 2]}),
        ('[1, 2] and then {"b": 2}', [1, 2]),
        ('{"broken": [1, 2} then {"ok": true}', {"ok": True}),
    ],
)
def test_extract_json_finds_the_first_complete_value(text, expected):
    assert extract_json(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("no json here", "no JSON"), ('{"components": [{"name": "phys', "malformed or cut off")],
)
def test_extract_json_says_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match=reason):
        extract_json(text)


def test_schema_violation_names_the_place():
    with pytest.raises(ValueError, match="components/0/phrases"):
        validate_json_answer('{"components": [{"name": "x", "phrases": ["a"]}]}', SCHEMA)
