"""A campaign's questions, declared as data; answers are validated against them.

`Campaign.questions` is an ordered list of question dicts:

    {"key": str, "type": "text" | "score" | "yesno" | "choice" | "per_component", "prompt": str,
     "required": bool, "rubric": [{"score": int, "label": str}]   (type score),
     "options": [{"value": str, "label": str}]                     (types choice and per_component),
     "panel": "domain" | "general" | None}                         (which contexts the question is about)

`Judgment.answers` is a dict {key: value}: text -> str, score -> an int of the rubric (or None when not
required and unanswered), yesno -> bool, choice -> an option value (or None), per_component ->
{component name: option value}. The labelling form, its keyboard map, the API serializer, the export
columns and the score summaries are all derived from this list; nothing else names the questions.
This module is pure Python (no models), so migrations and any layer can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

TEXT = "text"
SCORE = "score"
YESNO = "yesno"
CHOICE = "choice"
PER_COMPONENT = "per_component"
TYPES: tuple[str, ...] = (TEXT, SCORE, YESNO, CHOICE, PER_COMPONENT)
PANELS: tuple[str, ...] = ("domain", "general")

MAX_TEXT = 5000
MAX_RUBRIC_SCORE = 9  # scores are typed with one number key
MAX_OPTIONS = 9  # options are picked with the number keys 1-9
# Names an export row or the labelling form already uses; a question key may not take them.
RESERVED_KEYS = frozenset(
    {"item_code", "sae", "method", "feature_index", "labeller", "time_spent_ms", "revisions", "created_at",
     "updated_at", "shown_at_ms", "reason", "panel_order", "csrfmiddlewaretoken", "campaign", "status",
     "skip_reason", "item_kind"}
)  # fmt: skip
# Letters the labelling page uses for itself (s = skip, g = guidelines); yes/no questions get another one.
RESERVED_SHORTCUTS = frozenset("sgh")  # skip, guidelines, history
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

DEFAULT_RUBRIC: list[dict] = [
    {"score": 0, "label": "No coherent explanation"},
    {"score": 1, "label": "Coherent but generic (syntax, formatting, common words)"},
    {"score": 2, "label": "Related to the subject but not specific to it"},
    {"score": 3, "label": "A concept specific to the subject"},
]

# The study's questions, in groups an admin switches on or off together.
DEFAULT_GROUPS: dict[str, str] = {
    "domain": "Explain the feature from the subject-text examples, and score that explanation",
    "general": "Explain the feature from the everyday-text examples, and score that explanation",
    "nice": 'Tick "nice feature" (yes/no)',
    "comment": "A free comment",
}


# The blinding question: which source a labeller thinks the feature came from, as neutral letters (assigned per
# campaign: `Campaign.source_letters`) or "don't know"; optional, never shown as right or wrong.
GUESS_KEY = "source_guess"
DONT_KNOW = "dont_know"
GUESS_PROMPT = "Which source do you think this feature came from?"


def guess_question(n_sources: int) -> dict:
    """The guess question of a campaign with `n_sources` sources (letters A, B, ... then "don't know")."""
    if not 2 <= n_sources < MAX_OPTIONS:
        raise QuestionError(f"Labellers can guess among 2 to {MAX_OPTIONS - 1} sources; this campaign has {n_sources}.")
    letters = [chr(ord("A") + i) for i in range(n_sources)]
    options = [{"value": x, "label": x} for x in letters] + [{"value": DONT_KNOW, "label": "Don't know"}]
    return {"key": GUESS_KEY, "type": CHOICE, "prompt": GUESS_PROMPT, "required": False, "options": options,
            "panel": None}  # fmt: skip


class QuestionError(ValueError):
    """A question list or an answer that does not fit the schema; the message is meant for a person."""


def default_rubric() -> list[dict]:
    return [dict(level) for level in DEFAULT_RUBRIC]


def _panel_questions(panel: str, rubric: Sequence[dict]) -> list[dict]:
    return [
        {"key": f"{panel}_explanation", "type": TEXT, "prompt": f"Explanation from the {panel} examples",
         "required": False, "panel": panel},
        {"key": f"{panel}_score", "type": SCORE, "prompt": f"Score the explanation from the {panel} examples",
         "required": True, "rubric": [dict(level) for level in rubric], "panel": panel},
    ]  # fmt: skip


def default_questions(
    *, groups: Iterable[str] = tuple(DEFAULT_GROUPS), rubric: Sequence[dict] | None = None
) -> list[dict]:
    """The study's questions (explanation + score from the domain contexts, the same from the general
    contexts, "nice", comment), restricted to `groups` (names of DEFAULT_GROUPS), in the study's order."""
    groups = set(groups)
    unknown = groups - set(DEFAULT_GROUPS)
    if unknown:
        raise QuestionError(f"Unknown question groups {sorted(unknown)}; choose from {list(DEFAULT_GROUPS)}.")
    rubric = rubric if rubric is not None else DEFAULT_RUBRIC
    out: list[dict] = []
    for panel in PANELS:
        if panel in groups:
            out += _panel_questions(panel, rubric)
    if "nice" in groups:
        out.append({"key": "nice", "type": YESNO, "prompt": "Nice feature", "required": False, "panel": None})
    if "comment" in groups:
        out.append({"key": "comment", "type": TEXT, "prompt": "Comment", "required": False, "panel": None})
    return out


def rubric_validate(rubric: object) -> list[dict]:
    """A rubric is a non-empty list of {"score": 0..9, "label": text} with distinct scores (sorted)."""
    if not isinstance(rubric, list) or not rubric:
        raise QuestionError("The rubric needs at least one level.")
    levels: list[dict] = []
    for level in rubric:
        if not isinstance(level, dict) or "score" not in level or not str(level.get("label", "")).strip():
            raise QuestionError('Each rubric level needs a "score" and a "label".')
        try:
            score = int(level["score"])
        except (TypeError, ValueError):
            raise QuestionError(f"Rubric score {level['score']!r} is not a whole number.") from None
        if not 0 <= score <= MAX_RUBRIC_SCORE:
            raise QuestionError(f"Rubric scores must be between 0 and {MAX_RUBRIC_SCORE} (one number key each).")
        levels.append({"score": score, "label": str(level["label"]).strip()})
    if len({lv["score"] for lv in levels}) != len(levels):
        raise QuestionError("Rubric scores must be distinct.")
    return sorted(levels, key=lambda lv: lv["score"])


def _options_validate(options: object, key: str) -> list[dict]:
    if not isinstance(options, list) or not options:
        raise QuestionError(f'Question "{key}" needs a list of options.')
    if len(options) > MAX_OPTIONS:
        raise QuestionError(f'Question "{key}" has {len(options)} options; at most {MAX_OPTIONS} (one key each).')
    out = []
    for option in options:
        if not isinstance(option, dict) or not str(option.get("value", "")).strip():
            raise QuestionError(f'Each option of "{key}" needs a "value" (and a "label").')
        value = str(option["value"]).strip()
        out.append({"value": value, "label": str(option.get("label") or value).strip()})
    if len({o["value"] for o in out}) != len(out):
        raise QuestionError(f'The options of "{key}" must have distinct values.')
    return out


def questions_validate(questions: object, *, rubric: Sequence[dict] | None = None) -> list[dict]:
    """Check a question list and return it normalised (every field present, in a fixed shape).

    Entries may also be names of the default groups ("domain", "general", "nice", "comment") or keys of
    the default questions, as older clients sent; a score question without a rubric gets `rubric` (or the
    default rubric).
    """
    if not isinstance(questions, list) or not questions:
        raise QuestionError("A campaign needs at least one question.")
    rubric = rubric_validate(list(rubric)) if rubric is not None else default_rubric()
    defaults = {q["key"]: q for q in default_questions(rubric=rubric)}
    expanded: list[object] = []
    for entry in questions:
        if isinstance(entry, str) and entry in DEFAULT_GROUPS:
            expanded += default_questions(groups=[entry], rubric=rubric)
        elif isinstance(entry, str) and entry in defaults:
            expanded.append(defaults[entry])
        elif isinstance(entry, str):
            raise QuestionError(
                f'Unknown question "{entry}"; name one of {list(DEFAULT_GROUPS)} or give the question itself.'
            )
        else:
            expanded.append(entry)
    out: list[dict] = []
    for q in expanded:
        if not isinstance(q, dict):
            raise QuestionError("Each question is an object with a key, a type and a prompt.")
        key = str(q.get("key", ""))
        if not KEY_PATTERN.match(key):
            raise QuestionError(
                f'Question key "{key}" must start with a letter and use only a-z, 0-9 and _ (at most 40).'
            )
        if key in RESERVED_KEYS:
            raise QuestionError(f'"{key}" is a reserved name; give the question another key.')
        kind = q.get("type")
        if kind not in TYPES:
            raise QuestionError(f'Question "{key}" has type {kind!r}; choose from {list(TYPES)}.')
        prompt = str(q.get("prompt") or "").strip()
        if not prompt:
            raise QuestionError(f'Question "{key}" needs a prompt.')
        panel = q.get("panel")
        if panel not in (*PANELS, None):
            raise QuestionError(f'Question "{key}" is about panel {panel!r}; choose "domain", "general" or none.')
        norm = {"key": key, "type": kind, "prompt": prompt, "required": bool(q.get("required", False)), "panel": panel}
        if kind == SCORE:
            norm["rubric"] = rubric_validate(q["rubric"]) if q.get("rubric") is not None else [dict(r) for r in rubric]
        if kind in (CHOICE, PER_COMPONENT):
            norm["options"] = _options_validate(q.get("options"), key)
        out.append(norm)
    keys = [q["key"] for q in out]
    if len(set(keys)) != len(keys):
        raise QuestionError(f"Question keys must be distinct: {keys}.")
    return out


def missing_message(question: dict) -> str:
    """What a labeller is told when a required question is unanswered."""
    if question["type"] == SCORE:
        return f"{question['prompt']}."
    if question["type"] in (CHOICE, PER_COMPONENT):
        return f"Choose an answer to “{question['prompt']}”."
    return f"Answer “{question['prompt']}”."


def answer_clean(question: dict, value: object) -> object:
    """One answer in its stored form, or QuestionError with a message for the labeller."""
    kind, required = question["type"], question["required"]
    if kind == TEXT:
        text = "" if value is None else str(value).strip()
        if len(text) > MAX_TEXT:
            raise QuestionError(f"“{question['prompt']}” is longer than {MAX_TEXT} characters.")
        if required and not text:
            raise QuestionError(missing_message(question))
        return text
    if kind == YESNO:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "on", "yes", "y")
        return bool(value)
    if kind == SCORE:
        if value is None or value == "":
            if required:
                raise QuestionError(missing_message(question))
            return None
        try:
            score = int(value)
        except (TypeError, ValueError):
            raise QuestionError(f"{value!r} is not a score of this campaign's rubric.") from None
        if isinstance(value, float) and value != score or score not in {lv["score"] for lv in question["rubric"]}:
            raise QuestionError(f"{value} is not a score of this campaign's rubric.")
        return score
    values = {o["value"] for o in question["options"]}
    if kind == CHOICE:
        if value is None or value == "":
            if required:
                raise QuestionError(missing_message(question))
            return None
        if str(value) not in values:
            raise QuestionError(f"{value!r} is not an option of “{question['prompt']}”.")
        return str(value)
    # per_component: {component name: option value}
    if value is None or value == {}:
        if required:
            raise QuestionError(missing_message(question))
        return {}
    if not isinstance(value, dict):
        raise QuestionError(f"“{question['prompt']}” takes one answer per component.")
    out = {}
    for component, choice in value.items():
        if str(choice) not in values:
            raise QuestionError(f"{choice!r} is not an option of “{question['prompt']}” ({component}).")
        out[str(component)] = str(choice)
    return out


# Question types whose answer a gold item can expect and a repeat can be compared on (free text cannot).
CHECKABLE_TYPES: tuple[str, ...] = (SCORE, YESNO, CHOICE)
_YES, _NO = ("yes", "y", "true", "1"), ("no", "n", "false", "0")


def checkable_questions(questions: Sequence[dict]) -> list[dict]:
    """The questions whose answers can be checked against an expected one or a repeat (score, yes/no, choice);
    not the source guess, which measures blinding, not the feature."""
    return [q for q in questions if q["type"] in CHECKABLE_TYPES and q["key"] != GUESS_KEY]


def expected_clean(questions: Sequence[dict], expected: object) -> dict:
    """A gold item's expected answers {question key: answer}, checked against the questions and stored like the
    answers they are compared with; QuestionError says what to fix. Yes/no takes yes/no (or true/false)."""
    if not isinstance(expected, dict) or not expected:
        raise QuestionError("Give at least one expected answer, as question=answer.")
    by_key = {q["key"]: q for q in questions}
    checkable = [q["key"] for q in checkable_questions(questions)]
    out = {}
    for key, value in expected.items():
        question = by_key.get(key)
        if question is None:
            raise QuestionError(f'No question "{key}" in this campaign; expected answers can be given for {checkable}.')
        if question["type"] not in CHECKABLE_TYPES:
            raise QuestionError(
                f'"{key}" is a {question["type"]} question, which has no single right answer; '
                f"expected answers can be given for {checkable}."
            )
        if question["type"] == YESNO and not isinstance(value, bool):
            word = str(value).strip().lower()
            if word not in (*_YES, *_NO):
                raise QuestionError(f'"{key}" is a yes/no question: expect yes or no, not {value!r}.')
            value = word in _YES
        if value is None or value == "":
            raise QuestionError(f'Give the expected answer to "{key}".')
        try:
            out[key] = answer_clean(question, value)
        except QuestionError as exc:
            raise QuestionError(f'Expected answer to "{key}": {exc}') from None
    return {q["key"]: out[q["key"]] for q in questions if q["key"] in out}


def answers_clean(questions: Sequence[dict], answers: dict) -> dict:
    """The answers to store: one entry per question, in the questions' order; other keys are dropped."""
    if not isinstance(answers, dict):
        raise QuestionError("Answers are an object keyed by question.")
    return {q["key"]: answer_clean(q, answers.get(q["key"])) for q in questions}


def score_questions(questions: Sequence[dict]) -> list[dict]:
    """The rubric-score questions (the ones summaries and agreement figures are computed for)."""
    return [q for q in questions if q["type"] == SCORE]


def yesno_questions(questions: Sequence[dict]) -> list[dict]:
    return [q for q in questions if q["type"] == YESNO]


def choice_questions(questions: Sequence[dict]) -> list[dict]:
    return [q for q in questions if q["type"] == CHOICE]


def export_columns(questions: Sequence[dict]) -> list[str]:
    """The answer columns of an export row, in question order."""
    return [q["key"] for q in questions]


def rubrics(questions: Sequence[dict]) -> list[dict]:
    """Each distinct rubric once, with the prompts of the questions it scores (for the guidelines)."""
    out: list[dict] = []
    for q in score_questions(questions):
        for entry in out:
            if entry["rubric"] == q["rubric"]:
                entry["prompts"].append(q["prompt"])
                break
        else:
            out.append({"rubric": q["rubric"], "prompts": [q["prompt"]]})
    return out


def shortcuts(questions: Sequence[dict]) -> dict[str, str]:
    """Keyboard letters of the yes/no questions: the first free letter of each key ("nice" -> n)."""
    taken = set(RESERVED_SHORTCUTS)
    out: dict[str, str] = {}
    for q in yesno_questions(questions):
        for letter in q["key"] + "abcdefhijklmnopqrtuvwxyz":
            if letter.isalpha() and letter not in taken:
                taken.add(letter)
                out[q["key"]] = letter
                break
    return out
