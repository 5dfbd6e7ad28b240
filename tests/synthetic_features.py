"""Synthetic features whose meaning is known, and a rule-based model that reads explanations literally.

- `packed_dashboard(...)` builds a dashboard payload in the stored format by brute force for a feature
  that fires exactly on digit tokens (or colour words);
- `RuleModel` answers the autointerp prompts the way a perfectly literal model would: as explainer it
  names what the marked tokens are ("digits", "colours"); as scorer it applies the explanation word by
  word. `RuleJudge` wraps it as an in-process ChatClient; `RuleLLMServer` serves it over loopback HTTP
  (tests/llm_server.py's OpenAI-compatible fake, whose scripted failures still apply).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from compute.ml.llm import Completion
from tests.llm_server import FakeLLMServer, Reply, server_error

WORDS = [" the", " a", " of", " river", " house", " ran", " quickly", " and", " to", " old", " new", " city"]
COLOURS = [" red", " green", " blue", " yellow"]
DIGITS = [" 0", " 1", " 2", " 3", " 4", " 5", " 6", " 7", " 8", " 9"]
BEFORE, AFTER = 6, 3


def sequences(rng: random.Random, n: int, *, special: list[str] | None, length: int = 40) -> list[list[str]]:
    """Random word sequences; ~8% of tokens drawn from `special` (digits, colours), ~1% colour words."""
    out = []
    for _ in range(n):
        seq = []
        for _ in range(length):
            roll = rng.random()
            if roll < 0.08:
                seq.append(rng.choice(special or WORDS))
            elif roll < 0.09:
                seq.append(rng.choice(COLOURS))
            else:
                seq.append(rng.choice(WORDS))
        out.append(seq)
    return out


def digit_activation(token: str) -> float:
    """Fires exactly on digit tokens, more strongly on larger digits."""
    return 1.0 + int(token) if token.strip().isdigit() else 0.0


def colour_activation(token: str) -> float:
    return 2.0 + COLOURS.index(token) if token in COLOURS else 0.0


def packed_dashboard(
    seqs: list[list[str]],
    activation: Callable[[str], float] = digit_activation,
    *,
    seed: int = 1,
    top_k: int = 20,
    n_bins: int = 10,
    per_bin: int = 5,
    seq_offset: int = 0,
) -> dict[str, Any]:
    """A dashboard payload in the stored format (top examples, quantile samples, string table), by brute force."""
    strings: list[str] = []
    index: dict[str, int] = {}

    def example(s: int, p: int) -> dict[str, Any]:
        lo, hi = max(0, p - BEFORE), min(len(seqs[s]), p + AFTER + 1)
        ids = []
        for tok in seqs[s][lo:hi]:
            if tok not in index:
                index[tok] = len(strings)
                strings.append(tok)
            ids.append(index[tok])
        return {
            "t": ids,
            "v": [activation(t) for t in seqs[s][lo:hi]],
            "c": p - lo,
            "x": activation(seqs[s][p]),
            "s": s + seq_offset,
            "p": p,
        }

    firing = [(s, p) for s, seq in enumerate(seqs) for p, tok in enumerate(seq) if activation(tok) > 0]
    ranked = sorted(firing, key=lambda sp: (-activation(seqs[sp[0]][sp[1]]), sp))
    top = [example(s, p) for s, p in ranked[:top_k]]
    by_value = sorted(firing, key=lambda sp: (activation(seqs[sp[0]][sp[1]]), sp))
    rng = random.Random(seed)
    quantiles = []
    for b in range(n_bins):
        members = by_value[b * len(by_value) // n_bins : (b + 1) * len(by_value) // n_bins]
        chosen = rng.sample(members, min(per_bin, len(members)))
        quantiles.append({"lo": 0, "hi": 0, "count": len(members), "examples": [example(s, p) for s, p in chosen]})
    return {
        "top": top,
        "quantiles": quantiles,
        "strings": strings,
        "histogram": {"lo": 0.0, "hi": 10.0, "counts": [1] * 10},
        "mean": 1.0,
        "logits": {"pos": [[" 5", 1.0]], "neg": []},
    }


def plain_dashboard(seqs: list[list[str]], *, seq_offset: int) -> dict[str, Any]:
    """A dashboard payload whose windows are plain text (another feature's contexts: non-activating candidates)."""
    strings = sorted({t for seq in seqs for t in seq})
    top = [
        {"t": [strings.index(t) for t in seq[:10]], "v": [0.0] * 10, "c": 6, "x": 1.0, "s": seq_offset + i, "p": 6}
        for i, seq in enumerate(seqs)
    ]
    return {"top": top, "quantiles": [], "strings": strings, "histogram": {}, "mean": 0.0, "logits": {}}


# ----------------------------------------------------------------------------- the literal model


def _is_digit(word: str) -> bool:
    return word.strip().isdigit()


def _is_colour(word: str) -> bool:
    return f" {word.strip()}" in COLOURS


class RuleModel:
    """Reads prompts the way a perfectly literal model would (explainer, detection and fuzzing)."""

    @staticmethod
    def predicate(explanation: str) -> Callable[[str], bool]:
        text = explanation.lower()
        if "digit" in text:
            return _is_digit
        if "colour" in text or "color" in text:
            return _is_colour
        return lambda word: False

    def answer(self, messages: list[dict[str, str]]) -> str:
        system, prompt = messages[0]["content"], messages[-1]["content"]
        if "[EXPLANATION]" in system:
            marked = [w for span in re.findall(r"<<(.*?)>>", prompt) for w in span.split()]
            if marked and all(_is_digit(w) for w in marked):
                return "[EXPLANATION]: digits"
            if marked and all(_is_colour(w) for w in marked):
                return "[EXPLANATION]: colours"
            return "[EXPLANATION]: assorted words"
        explanation = re.search(r"Feature explanation: (.*)", prompt).group(1)
        fits = self.predicate(explanation)
        fuzzing = "correctly marked" in system
        answers = []
        for line in re.findall(r"^Example \d+: (.*)$", prompt, flags=re.MULTILINE):
            if fuzzing:
                spans = re.findall(r"<<(.*?)>>", line)
                ok = bool(spans) and all(fits(w) for span in spans for w in span.split())
            else:
                ok = any(fits(w) for w in re.sub(r"<<|>>", " ", line).split())
            answers.append(int(ok))
        return "[" + ",".join(map(str, answers)) + "]"


class RuleJudge:
    """RuleModel as an in-process ChatClient."""

    model = "rule-judge"

    def __init__(self) -> None:
        self.calls = 0
        self.rules = RuleModel()

    def complete(self, messages, *, max_tokens, temperature, json_schema=None):
        self.calls += 1
        text = self.rules.answer(messages)
        return Completion(text=text, model=self.model, messages=messages, params={"temperature": temperature}, raw=text)


class RuleLLMServer(FakeLLMServer):
    """The loopback OpenAI-compatible server answering unscripted requests like RuleModel.

    Scripted replies (`reply(...)`: 429, garbage, slow, 5xx) still come first. `fail_after`: every
    request after that many answers 503 (the endpoint went down). `explanation_override`: the answer
    to every explainer prompt.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rules = RuleModel()
        self.fail_after: int | None = None
        self.explanation_override: str | None = None

    def _next(self, path: str, headers: dict, payload: Any) -> Reply:
        reply = super()._next(path, headers, payload)
        if reply is not self.default or not isinstance(payload, dict):
            return reply
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return server_error(503)
        messages = payload["messages"]
        if self.explanation_override is not None and "[EXPLANATION]" in messages[0]["content"]:
            return Reply(content=self.explanation_override)
        return Reply(content=self.rules.answer(messages))

    def prompts(self, start: int = 0) -> list[list[dict[str, str]]]:
        """The messages of every request received (from index `start`)."""
        return [r["json"]["messages"] for r in self.requests[start:] if isinstance(r["json"], dict)]


@contextmanager
def rule_llm_server() -> Iterator[RuleLLMServer]:
    server = RuleLLMServer().start()
    try:
        yield server
    finally:
        server.stop()
