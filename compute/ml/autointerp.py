"""Automated interpretability: explain a feature from its dashboard, and score any explanation.

The definitions follow EleutherAI's delphi:

- the explainer sees activating contexts with the activating tokens between << >> and their
  activations (0-10, relative to the feature's max), from the top of the range and from across
  it, plus the tokens the feature's decoder direction promotes in the output;
- detection: the scorer is shown a shuffled mix of held-out activating contexts (drawn across the
  activation range) and non-activating contexts, `n_shown` per prompt, and answers a list of 0/1
  (does the explanation apply?); the score is the balanced accuracy;
- fuzzing: the scorer is shown contexts with tokens marked, either the truly activating tokens of an
  activating context or as many random tokens of a non-activating context (delphi's default), and
  answers whether the marking fits the explanation; balanced accuracy.

Held-out contexts never overlap (same sequence, overlapping positions) a context the explainer saw.
`scoring_material` is deterministic given its inputs and seed, and it is built once per feature and
stored, so every explanation of a feature (automated or human) is scored on identical prompts.

Pure Python (no Django, no torch): the LLM is any object with the `ChatClient.complete` method.
"""

from __future__ import annotations

import math
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from compute.ml.llm import ChatClient, Completion, LLMBadAnswer
from compute.ml.tokens import merged_texts

DETECTION = "detection"
FUZZING = "fuzzing"
METHODS: tuple[str, ...] = (DETECTION, FUZZING)
EXPLANATION_MARKER = "[EXPLANATION]:"

# How a token is written inside a prompt line: newlines would break the "Example i:" layout.
_PROMPT_WS = {"\n": "↵", "\r": "", "\t": " "}


class NotAnExplanation(ValueError):
    """An answer that must not be stored as an explanation (empty, leaked reasoning, over-long)."""


class BadPredictions(ValueError):
    """A scorer answer that is not a list of exactly n 0/1 judgments."""


class ExplanationRefused(Exception):
    """Every attempt to explain a feature gave an answer that is not an explanation."""

    def __init__(self, message: str, refused: list[dict[str, str]], model_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.refused = refused
        self.model_seconds = model_seconds


@dataclass(frozen=True)
class AutoInterpConfig:
    """Every knob of the pipeline; stored with each explanation and score."""

    explain_top: int = 10  # top-activating contexts shown to the explainer
    explain_per_bin: int = 1  # plus this many per quantile bin (contexts across the activation range)
    test_per_bin: int = 3  # held-out activating contexts per quantile bin for scoring
    n_shown: int = 5  # contexts per scoring prompt (delphi's n_examples_shown)
    threshold: float = 0.3  # tokens above threshold * max are marked (delphi)
    max_marked_per_example: int = 10  # activation values listed per explainer example (delphi)
    n_logits: int = 10  # top output-logit tokens shown to the explainer
    explain_max_tokens: int = 160
    explain_temperature: float = 0.0
    retry_temperature: float = 0.7  # later attempts sample, so a refused answer is not simply repeated
    explain_attempts: int = 3
    score_attempts: int = 2
    max_explanation_chars: int = 240
    max_explanation_words: int = 40
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoInterpConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


# ----------------------------------------------------------------------------- contexts


@dataclass(frozen=True)
class Context:
    """One window of text with this feature's activation on every token (0 where unknown or silent).

    `seq` and `pos` place the window's centre token in the corpus (-1 when unknown), `center` is that token's
    offset in the window, `n_tokens` the window's length in model tokens (0: one per entry of `tokens`; an
    entry is a whole character where several byte-level tokens spell it, see `compute.ml.tokens`);
    `quantile` is the dashboard's quantile bin (-1 for a top example, None for a non-activating context).
    """

    tokens: tuple[str, ...]
    values: tuple[float, ...]
    center: int = 0
    seq: int = -1
    pos: int = -1
    quantile: int | None = -1
    n_tokens: int = 0

    @property
    def max_value(self) -> float:
        return max(self.values, default=0.0)

    def span(self) -> tuple[int, int, int] | None:
        """(sequence, first position, end position) in the corpus, None when unknown."""
        if self.seq < 0 or self.pos < 0:
            return None
        start = self.pos - self.center
        return (self.seq, start, start + (self.n_tokens or len(self.tokens)))

    def key(self) -> tuple[Any, ...]:
        span = self.span()
        return span if span is not None else ("text", self.tokens)


def _overlaps(a: tuple[int, int, int] | None, b: tuple[int, int, int] | None) -> bool:
    return a is not None and b is not None and a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def _unpack(example: dict[str, Any], strings: list[str], quantile: int | None) -> Context:
    """A stored dashboard example as a context, its tokens merged into whole characters."""
    texts, values = merged_texts([strings[i] for i in example["t"]], [float(v) for v in example["v"]])
    return Context(
        tokens=tuple(texts),
        values=tuple(values),
        n_tokens=len(example["t"]),
        center=int(example["c"]),
        seq=int(example["s"]),
        pos=int(example["p"]),
        quantile=quantile,
    )


def contexts_from_dashboard(data: dict[str, Any]) -> tuple[list[Context], list[list[Context]]]:
    """(top examples, quantile bins from low to high) of one stored dashboard payload."""
    strings = data["strings"]
    top = [_unpack(ex, strings, -1) for ex in data.get("top", [])]
    bins = [[_unpack(ex, strings, qi) for ex in q["examples"]] for qi, q in enumerate(data.get("quantiles", []))]
    return top, bins


def negative_candidates(data: dict[str, Any]) -> list[Context]:
    """Windows of another feature's dashboard, as candidate non-activating contexts (values unknown: 0)."""
    top, bins = contexts_from_dashboard(data)
    return [replace(c, values=(0.0,) * len(c.tokens), quantile=None) for c in [*top, *(c for b in bins for c in b)]]


@dataclass(frozen=True)
class ContextSplit:
    explain: list[Context]  # what the explainer sees
    test: list[Context]  # held-out activating contexts for scoring


def split_contexts(top: list[Context], bins: list[list[Context]], config: AutoInterpConfig) -> ContextSplit:
    """The explainer's contexts (top + a few per bin) and disjoint held-out contexts across the range.

    Held-out contexts come from every quantile bin (`test_per_bin` each); a rare feature without bins
    falls back to the top examples the explainer did not see. No held-out window overlaps a window the
    explainer saw, or another held-out window.
    """
    explain = [c for c in top[: config.explain_top] if c.max_value > 0]
    for contexts in bins:
        explain.extend(c for c in contexts[: config.explain_per_bin] if c.max_value > 0)
    seen = [c.span() for c in explain]
    seen_keys = {c.key() for c in explain}

    def take(candidates: list[Context], limit: int, out: list[Context]) -> None:
        added = 0
        for c in candidates:
            if added >= limit:
                return
            span = c.span()
            if c.max_value <= 0 or c.key() in seen_keys or any(_overlaps(span, s) for s in seen):
                continue
            out.append(c)
            seen.append(span)
            seen_keys.add(c.key())
            added += 1

    test: list[Context] = []
    for contexts in bins:
        take(contexts[config.explain_per_bin :], config.test_per_bin, test)
    wanted = config.test_per_bin * max(len(bins), 1)
    if len(test) < wanted:
        take(top[config.explain_top :], wanted - len(test), test)
    return ContextSplit(explain=explain, test=test)


def select_negatives(
    candidates: list[Context], *, exclude: list[Context], n: int, seed: int, threshold: float = 0.3
) -> list[Context]:
    """n distinct candidates that overlap none of `exclude` (the feature's own known windows), seeded.

    A candidate's activations of this feature are unknown (no model run here), so candidates containing
    a token the feature is known to fire on strongly (at or above threshold x max in its own windows)
    are used only when the others run out.
    """
    spans = [c.span() for c in exclude]
    keys = {c.key() for c in exclude}
    hot = {c.tokens[i] for c in exclude for i in active_positions(c, threshold)}
    unique: dict[tuple[Any, ...], Context] = {}
    for c in candidates:
        if c.key() in keys or c.key() in unique or any(_overlaps(c.span(), s) for s in spans):
            continue
        unique[c.key()] = c
    pool = sorted(unique.values(), key=lambda c: repr(c.key()))
    random.Random(seed).shuffle(pool)
    clean = [c for c in pool if not hot.intersection(c.tokens)]
    return (clean + [c for c in pool if hot.intersection(c.tokens)])[:n]


# ----------------------------------------------------------------------------- rendering


def _tok(text: str) -> str:
    return "".join(_PROMPT_WS.get(ch, ch) for ch in text)


def mark_tokens(tokens: tuple[str, ...] | list[str], marked: set[int]) -> str:
    """Tokens joined into text, runs of marked tokens between << and >> (delphi's highlighting)."""
    out: list[str] = []
    inside = False
    for i, token in enumerate(tokens):
        if (i in marked) != inside:
            out.append("<<" if not inside else ">>")
            inside = not inside
        out.append(_tok(token))
    if inside:
        out.append(">>")
    return "".join(out)


def active_positions(context: Context, threshold: float) -> set[int]:
    """Tokens at or above threshold x the context's max (none for a silent context)."""
    top = context.max_value
    if top <= 0:
        return set()
    return {i for i, v in enumerate(context.values) if v > 0 and v >= threshold * top}


# ----------------------------------------------------------------------------- explainer prompt

EXPLAINER_SYSTEM = """You are a careful researcher studying what a single feature of a language model responds to.

You will see text examples in which the tokens where the feature is active are between delimiters like <<this>>; a run of consecutive active tokens is delimited together <<like this>>. After each example, the active tokens are listed with how strongly the feature fires on them (0-10). You may also see the tokens the feature makes more likely as the next token.

- Describe, in one short sentence, what the active tokens and their contexts have in common.
- Do not mention the << >> delimiters, do not list several alternatives, and do not explain your reasoning.
- The last line of your answer must be the explanation, written as [EXPLANATION]: <your explanation>"""

_FEW_SHOT: list[tuple[str, str]] = [
    (
        'Example 1: the sky turned <<red>> at dusk\nActivations: ("red", 9)\n'
        'Example 2: she painted the door <<bright green>> and\nActivations: ("bright", 3), (" green", 8)\n'
        'Example 3: a <<blue>> car was parked\nActivations: (" blue", 7)\n'
        "Tokens the feature promotes next: ' and', ' color', ' light'",
        f"{EXPLANATION_MARKER} Colour words describing objects.",
    ),
    (
        'Example 1: it was much fast<<er>> than the\nActivations: ("er", 8)\n'
        'Example 2: the hill looked steep<<er>> now\nActivations: ("er", 6)\n'
        "Tokens the feature promotes next: ' than'",
        f'{EXPLANATION_MARKER} The suffix "er" of comparative adjectives.',
    ),
]


def _activation_line(context: Context, scale: float, config: AutoInterpConfig) -> str:
    items = []
    for i in sorted(active_positions(context, config.threshold))[: config.max_marked_per_example]:
        level = round(10 * context.values[i] / scale) if scale > 0 else 0
        items.append(f'("{_tok(context.tokens[i])}", {level})')
    return "Activations: " + ", ".join(items)


def explainer_messages(contexts: list[Context], logits: list[str], config: AutoInterpConfig) -> list[dict[str, str]]:
    """delphi's default explainer prompt (with activations), our wording, plus the top output logits."""
    scale = max((c.max_value for c in contexts), default=0.0)
    lines = []
    for n, context in enumerate(contexts, start=1):
        lines.append(f"Example {n}: {mark_tokens(context.tokens, active_positions(context, config.threshold))}")
        lines.append(_activation_line(context, scale, config))
    if logits:
        lines.append("Tokens the feature promotes next: " + ", ".join(repr(_tok(t)) for t in logits[: config.n_logits]))
    messages = [{"role": "system", "content": EXPLAINER_SYSTEM}]
    for question, answer in _FEW_SHOT:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": "\n".join(lines)})
    return messages


_REASONING = re.compile(
    r"<\s*/?\s*think\s*>|\bstep\s*\d|\blet me\b|\blet's\b|\bi think\b|\bi will\b|\bi'll\b|\bfirst,|\bhmm+\b|"
    r"\bwait,|\breasoning\b|\bthe examples?\b|\bexample \d|activations?:|<<|>>",
    re.IGNORECASE,
)


def parse_explanation(text: str, config: AutoInterpConfig) -> str:
    """The explanation in an explainer's answer, or NotAnExplanation saying why it is not one.

    With delphi's marker the explanation is what follows the last marker; without it the whole
    answer must itself be one short line. Refused: empty, reasoning in the explanation (think tags,
    steps, "let me", talk about the examples or the delimiters), more than one line, over-long.
    """
    body = text.strip()
    if EXPLANATION_MARKER.lower() in body.lower():
        body = body[body.lower().rindex(EXPLANATION_MARKER.lower()) + len(EXPLANATION_MARKER) :].strip()
    elif body.lower().startswith("explanation:"):
        body = body[len("explanation:") :].strip()
    body = body.strip().strip("\"'`").strip()
    if not body:
        raise NotAnExplanation("empty answer")
    if len([line for line in body.splitlines() if line.strip()]) > 1:
        raise NotAnExplanation("more than one line (reasoning leaked into the answer)")
    match = _REASONING.search(body)
    if match:
        raise NotAnExplanation(f"reasoning leaked into the answer ({match.group(0)!r})")
    if len(body) > config.max_explanation_chars or len(body.split()) > config.max_explanation_words:
        raise NotAnExplanation(
            f"over-long ({len(body)} characters, {len(body.split())} words; at most "
            f"{config.max_explanation_chars} and {config.max_explanation_words})"
        )
    return body


@dataclass
class ExplainResult:
    text: str
    model: str
    messages: list[dict[str, str]]
    params: dict[str, Any]
    raw: dict[str, Any] | str
    refused: list[dict[str, str]] = field(default_factory=list)  # earlier answers that were not explanations
    model_seconds: float = 0.0


def explain(client: ChatClient, messages: list[dict[str, str]], config: AutoInterpConfig) -> ExplainResult:
    """Ask for an explanation; refuse and retry non-explanations; ExplanationRefused after the last attempt.

    Transport errors (LLMUnavailable, ...) propagate: the caller decides, nothing is stored here.
    """
    refused: list[dict[str, str]] = []
    spent = 0.0
    for attempt in range(config.explain_attempts):
        temperature = config.explain_temperature if attempt == 0 else config.retry_temperature
        t0 = time.perf_counter()
        completion: Completion = client.complete(
            messages, max_tokens=config.explain_max_tokens, temperature=temperature
        )
        spent += time.perf_counter() - t0
        try:
            text = parse_explanation(completion.text, config)
        except NotAnExplanation as exc:
            refused.append({"answer": completion.text[:2000], "reason": str(exc)})
            continue
        return ExplainResult(
            text=text,
            model=completion.model,
            messages=completion.messages or messages,
            params=dict(completion.params or {"max_tokens": config.explain_max_tokens, "temperature": temperature}),
            raw=completion.raw,
            refused=refused,
            model_seconds=spent,
        )
    reasons = "; ".join(r["reason"] for r in refused)
    raise ExplanationRefused(f"no explanation after {config.explain_attempts} attempts: {reasons}", refused, spent)


# ----------------------------------------------------------------------------- scoring material


@dataclass(frozen=True)
class Sample:
    """One context as the scorer sees it, with the truth the scorer is judged against."""

    text: str
    activating: bool
    quantile: int | None  # the activating context's bin (-1 top), None for a non-activating one


@dataclass
class ScoringMaterial:
    """Everything the scorers are shown for one feature, in prompt order (batches of n_shown)."""

    detection: list[Sample]
    fuzzing: list[Sample]
    n_shown: int

    def samples(self, method: str) -> list[Sample]:
        if method not in METHODS:
            raise ValueError(f"unknown scoring method {method!r}; one of {', '.join(METHODS)}")
        return self.detection if method == DETECTION else self.fuzzing

    def batches(self, method: str) -> list[list[Sample]]:
        samples = self.samples(method)
        return [samples[i : i + self.n_shown] for i in range(0, len(samples), self.n_shown)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_shown": self.n_shown,
            **{m: [[s.text, s.activating, s.quantile] for s in self.samples(m)] for m in METHODS},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringMaterial:
        def load(rows: list[list[Any]]) -> list[Sample]:
            return [Sample(text=t, activating=bool(a), quantile=q) for t, a, q in rows]

        return cls(detection=load(data[DETECTION]), fuzzing=load(data[FUZZING]), n_shown=int(data["n_shown"]))


def scoring_material(test: list[Context], negatives: list[Context], config: AutoInterpConfig) -> ScoringMaterial:
    """delphi's detection and fuzzing samples from held-out contexts and non-activating ones, shuffled.

    As many non-activating contexts as activating ones are used (the shorter list sets the number), so
    the classes are balanced. Fuzzing marks the truly active tokens of activating contexts, and
    ceil(mean count of nonzero tokens per activating context) random tokens of non-activating ones.
    """
    n = min(len(test), len(negatives))
    test, negatives = test[:n], negatives[:n]
    rng = random.Random(config.seed)
    detection = [Sample(mark_tokens(c.tokens, set()), True, c.quantile) for c in test]
    detection += [Sample(mark_tokens(c.tokens, set()), False, None) for c in negatives]
    n_wrong = math.ceil(sum(sum(v > 0 for v in c.values) for c in test) / n) if n else 0
    fuzzing = [Sample(mark_tokens(c.tokens, active_positions(c, config.threshold)), True, c.quantile) for c in test]
    for c in negatives:
        marked = set(rng.sample(range(len(c.tokens)), min(max(n_wrong, 1), len(c.tokens))))
        fuzzing.append(Sample(mark_tokens(c.tokens, marked), False, None))
    rng.shuffle(detection)
    rng.shuffle(fuzzing)
    return ScoringMaterial(detection=detection, fuzzing=fuzzing, n_shown=config.n_shown)


# ----------------------------------------------------------------------------- scorer prompts

_DETECTION_SYSTEM = """You are a careful linguistics researcher.

You will be given an explanation of a feature of text, such as "male pronouns" or "text with negative sentiment", and then several text examples. For each example, decide whether the explanation applies to it: whether the example contains what the explanation describes.

Answer with a Python list with one entry per example, 1 if the explanation applies and 0 if it does not, for example [1,0,0,1,0]. Answer with the list only."""

_FUZZING_SYSTEM = """You are a careful linguistics researcher.

You will be given an explanation of a feature of text, such as "male pronouns" or "text with negative sentiment", and then several text examples in which some tokens are marked between << and >>. Some examples are marked wrongly. An example is correctly marked only if every marked token is an instance of what the explanation describes.

Answer with a Python list with one entry per example, 1 if the example is correctly marked and 0 if it is not, for example [1,0,0,1,0]. Answer with the list only."""

_DETECTION_SHOT = (
    "Feature explanation: Words for family members.\n\nText examples:\n\n"
    "Example 0: then her mother called from the kitchen\n"
    "Example 1: the train left the station at noon\n"
    "Example 2: my brother and I went fishing\n",
    "[1,0,1]",
)
_FUZZING_SHOT = (
    "Feature explanation: Words for family members.\n\nText examples:\n\n"
    "Example 0: then her <<mother>> called from the kitchen\n"
    "Example 1: the <<train>> left the station at noon\n"
    "Example 2: my brother and I <<went>> fishing\n",
    "[1,0,0]",
)


def scorer_messages(method: str, explanation: str, batch: list[Sample]) -> list[dict[str, str]]:
    system, shot = (_DETECTION_SYSTEM, _DETECTION_SHOT) if method == DETECTION else (_FUZZING_SYSTEM, _FUZZING_SHOT)
    examples = "\n".join(f"Example {i}: {s.text}" for i, s in enumerate(batch))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": shot[0]},
        {"role": "assistant", "content": shot[1]},
        {"role": "user", "content": f"Feature explanation: {explanation}\n\nText examples:\n\n{examples}\n"},
    ]


_LIST = re.compile(r"\[([^\[\]]*)\]")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def predictions_schema(n: int) -> dict[str, Any]:
    """The scorer's answer (a list of n 0/1 entries) as a JSON schema, for a client whose decoding follows one.

    The entries are the strings "0" and "1" (`parse_predictions` reads both forms): lm-format-enforcer 0.11
    lets a list of numbers or booleans end early or run on, but counts strings right.
    """
    return {"type": "array", "minItems": n, "maxItems": n, "items": {"type": "string", "enum": ["0", "1"]}}


def parse_predictions(text: str, n: int) -> list[bool]:
    """The first [..] list of n 0/1 entries in an answer; BadPredictions otherwise."""
    match = _LIST.search(text)
    if match is None:
        raise BadPredictions(f"no list in the answer {text[:80]!r}")
    entries = [e.strip().strip("'\"").lower() for e in match.group(1).split(",") if e.strip()]
    if len(entries) != n:
        raise BadPredictions(f"expected {n} entries, got {len(entries)} in {match.group(0)[:80]!r}")
    out = []
    for entry in entries:
        if entry in _TRUE:
            out.append(True)
        elif entry in _FALSE:
            out.append(False)
        else:
            raise BadPredictions(f"entry {entry!r} is not 0 or 1")
    return out


# ----------------------------------------------------------------------------- scoring


def balanced_accuracy(truth: list[bool], predictions: list[bool]) -> float:
    """Mean of the recall on activating and on non-activating samples (scikit-learn's definition)."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(truth, predictions))


@dataclass
class ScoreResult:
    method: str
    balanced_accuracy: float
    predictions: list[bool | None]  # per sample in material order; None: no valid answer (counted wrong)
    n: int
    n_invalid: int
    tp: int
    tn: int
    fp: int
    fn: int
    answers: list[str]  # the raw answer of each prompt (last attempt)
    model: str
    params: dict[str, Any]
    prompts: int
    model_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_explanation(
    client: ChatClient,
    *,
    explanation: str,
    material: ScoringMaterial,
    method: str,
    config: AutoInterpConfig,
    workers: int = 1,
) -> ScoreResult:
    """Detection or fuzzing score of one explanation on a feature's stored material.

    A prompt whose answer is not a valid list is asked again (score_attempts in all); if it never is,
    its samples count as wrongly judged (conservative) and as invalid. Transport errors propagate.
    `workers` > 1 sends that many prompts at once (an endpoint's own concurrency limit still applies).
    """
    batches = material.batches(method)

    def ask(batch: list[Sample]) -> tuple[list[bool] | None, Completion | None, str, float]:
        messages = scorer_messages(method, explanation, batch)
        # A client that decodes by schema (the local model) is held to the list's form; an endpoint is asked in
        # the prompt only, as delphi's scorers ask.
        schema = predictions_schema(len(batch)) if getattr(client, "decodes_by_schema", False) else None
        spent, answer, completion = 0.0, "", None
        for _ in range(config.score_attempts):
            t0 = time.perf_counter()
            try:
                completion = client.complete(
                    messages, max_tokens=4 * len(batch) + 16, temperature=0.0, json_schema=schema
                )
            except LLMBadAnswer as exc:  # cut off before the list was complete
                answer = exc.attempts[-1]["text"] if exc.attempts else ""
                continue
            finally:
                spent += time.perf_counter() - t0
            answer = completion.text
            try:
                return parse_predictions(answer, len(batch)), completion, answer, spent
            except BadPredictions:
                continue
        return None, completion, answer, spent

    if workers > 1 and len(batches) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(ask, batches))
    else:
        outcomes = [ask(batch) for batch in batches]
    truth: list[bool] = []
    predictions: list[bool | None] = []
    for batch, (got, _, _, _) in zip(batches, outcomes, strict=True):
        truth.extend(s.activating for s in batch)
        predictions.extend(got if got is not None else [None] * len(batch))
    last = next((c for _, c, _, _ in reversed(outcomes) if c is not None), None)
    judged = [p if p is not None else not t for t, p in zip(truth, predictions, strict=True)]
    pairs = list(zip(truth, judged, strict=True))
    return ScoreResult(
        method=method,
        balanced_accuracy=balanced_accuracy(truth, judged) if truth else math.nan,
        predictions=predictions,
        n=len(truth),
        n_invalid=sum(p is None for p in predictions),
        tp=sum(t and p for t, p in pairs),
        tn=sum((not t) and (not p) for t, p in pairs),
        fp=sum((not t) and p for t, p in pairs),
        fn=sum(t and (not p) for t, p in pairs),
        answers=[answer[:500] for _, _, answer, _ in outcomes],
        model=last.model if last is not None else "",
        params=dict(last.params or {}) if last is not None else {},
        prompts=len(batches),
        model_seconds=sum(spent for _, _, _, spent in outcomes),
    )
