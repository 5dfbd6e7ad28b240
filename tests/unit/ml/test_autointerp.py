"""The autointerp pipeline on a synthetic feature whose meaning is known (it fires exactly on digits).

A rule-based judge stands in for the scoring model: it applies an explanation literally ("digits":
does the example contain a digit / is every marked token a digit; "colours": the same for colour
words). The true explanation must score near 1, a wrong one near chance (0.5).
"""

from __future__ import annotations

import random
import re

import pytest

from compute.ml.autointerp import (
    DETECTION,
    FUZZING,
    AutoInterpConfig,
    BadPredictions,
    Context,
    ExplanationRefused,
    NotAnExplanation,
    ScoringMaterial,
    balanced_accuracy,
    contexts_from_dashboard,
    explain,
    explainer_messages,
    negative_candidates,
    parse_explanation,
    parse_predictions,
    score_explanation,
    scoring_material,
    select_negatives,
    split_contexts,
)
from compute.ml.llm import Completion
from tests.ml_factories import tiny_local_instruct
from tests.synthetic_features import DIGITS, RuleJudge, packed_dashboard, plain_dashboard, sequences


class Scripted:
    """Answers from a list, in order (an explainer that misbehaves on purpose)."""

    model = "scripted"

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.temperatures: list[float] = []
        self.schemas: list[dict | None] = []

    def complete(self, messages, *, max_tokens, temperature, json_schema=None):
        self.temperatures.append(temperature)
        self.schemas.append(json_schema)
        text = self.answers.pop(0)
        return Completion(text=text, model=self.model, messages=messages, params={"temperature": temperature}, raw=text)


@pytest.fixture(scope="module")
def digits_feature():
    rng = random.Random(7)
    data = packed_dashboard(sequences(rng, 120, special=DIGITS))
    # Non-activating contexts: windows of another feature's dashboard, over text without digits.
    other_data = plain_dashboard(sequences(rng, 60, special=None), seq_offset=1000)
    return data, other_data


def _material(data, other_data, config):
    top, bins = contexts_from_dashboard(data)
    split = split_contexts(top, bins, config)
    negatives = select_negatives(
        negative_candidates(other_data), exclude=[*top, *(c for b in bins for c in b)], n=len(split.test), seed=3
    )
    return split, scoring_material(split.test, negatives, config)


@pytest.mark.parametrize("method", [DETECTION, FUZZING])
def test_true_explanation_scores_near_one_and_wrong_one_near_chance(digits_feature, method):
    config = AutoInterpConfig()
    split, material = _material(*digits_feature, config)
    judge = RuleJudge()
    right = score_explanation(judge, explanation="digits", material=material, method=method, config=config)
    wrong = score_explanation(judge, explanation="colours", material=material, method=method, config=config)
    assert right.n == 2 * len(split.test) == 60
    assert right.balanced_accuracy >= 0.95
    assert abs(wrong.balanced_accuracy - 0.5) <= 0.1
    assert right.n_invalid == wrong.n_invalid == 0
    assert judge.calls == 2 * len(material.batches(method)) == 2 * 12


def test_held_out_contexts_never_overlap_what_the_explainer_saw(digits_feature):
    data, _ = digits_feature
    config = AutoInterpConfig()
    top, bins = contexts_from_dashboard(data)
    split = split_contexts(top, bins, config)
    assert len(split.explain) == config.explain_top + config.explain_per_bin * 10
    seen_positions = {(c.seq, c.pos - c.center + i) for c in split.explain for i in range(len(c.tokens))}
    for c in split.test:
        assert not any((c.seq, c.pos - c.center + i) in seen_positions for i in range(len(c.tokens)))
    # Held-out contexts come from across the activation range: every quantile bin is represented.
    assert set(range(10)) <= {c.quantile for c in split.test}


def test_negatives_overlap_none_of_the_features_windows():
    mine = [Context(tokens=("a",) * 10, values=(1.0,) * 10, center=5, seq=3, pos=20)]  # covers 15..24
    candidates = [
        Context(tokens=("b",) * 10, values=(0.0,) * 10, center=5, seq=3, pos=p, quantile=None)
        for p in (8, 12, 29, 30, 40)
    ]
    chosen = select_negatives(candidates, exclude=mine, n=10, seed=0)
    # Windows 3..12, 25..34 and 35..44 are clear of 15..24; 7..16 and 24..33 overlap it.
    assert sorted(c.pos for c in chosen) == [8, 30, 40]


def test_negatives_avoid_tokens_the_feature_fires_on_while_others_remain():
    mine = [Context(tokens=(" a", " 7"), values=(0.0, 8.0), center=1, seq=0, pos=1)]
    hot = Context(tokens=(" b", " 7"), values=(0.0, 0.0), center=0, seq=5, pos=0, quantile=None)
    cold = [Context(tokens=(" b", " c"), values=(0.0, 0.0), center=0, seq=s, pos=0, quantile=None) for s in (6, 7)]
    assert hot not in select_negatives([hot, *cold], exclude=mine, n=2, seed=0)
    # When the clean candidates run out, the others fill up the number.
    assert hot in select_negatives([hot, *cold], exclude=mine, n=3, seed=0)


def test_material_is_identical_for_every_explanation_and_round_trips(digits_feature):
    config = AutoInterpConfig()
    _, first = _material(*digits_feature, config)
    _, second = _material(*digits_feature, config)
    assert first.as_dict() == second.as_dict()
    assert ScoringMaterial.from_dict(first.as_dict()).as_dict() == first.as_dict()
    # Balanced classes in both methods; fuzzing marks something in every sample.
    for method in (DETECTION, FUZZING):
        samples = first.samples(method)
        assert sum(s.activating for s in samples) * 2 == len(samples)
    assert all("<<" in s.text for s in first.fuzzing)
    assert not any("<<" in s.text for s in first.detection)


def test_fuzzing_marks_exactly_the_active_tokens_of_activating_contexts():
    config = AutoInterpConfig(threshold=0.3)
    ctx = Context(tokens=(" a", " 9", " 1", " b", " 0"), values=(0.0, 10.0, 2.0, 0.0, 5.0), center=1, seq=0, pos=1)
    neg = Context(tokens=(" x", " y", " z", " w", " v"), values=(0.0,) * 5, center=0, seq=9, pos=0, quantile=None)
    material = scoring_material([ctx], [neg], config)
    positive = next(s for s in material.fuzzing if s.activating)
    negative = next(s for s in material.fuzzing if not s.activating)
    assert positive.text == " a<< 9>> 1 b<< 0>>"  # 2.0 < 0.3 * 10 stays unmarked
    # ceil(mean nonzero tokens per activating context) = 3 random tokens of the negative are marked.
    assert sum(len(span.split()) for span in re.findall(r"<<(.*?)>>", negative.text)) == 3


def test_explainer_prompt_shows_marks_activation_levels_and_output_logits(digits_feature):
    data, _ = digits_feature
    config = AutoInterpConfig()
    top, bins = contexts_from_dashboard(data)
    split = split_contexts(top, bins, config)
    messages = explainer_messages(split.explain, [" 5", " six"], config)
    user = messages[-1]["content"]
    assert user.count("Example ") == len(split.explain)
    assert "<< 9>>" in user and '(" 9", 10)' in user
    assert "Tokens the feature promotes next: ' 5', ' six'" in user
    assert messages[0]["role"] == "system"


def test_explain_refuses_and_retries_non_explanations():
    config = AutoInterpConfig(explain_attempts=4)
    client = Scripted(
        [
            "",
            "<think>The marked tokens are numbers</think>",
            "Let me look at the examples. They all contain numbers, so the feature fires on digits.",
            "Some analysis first.\n[EXPLANATION]: Digits in running text.",
        ]
    )
    result = explain(client, [{"role": "user", "content": "x"}], config)
    assert result.text == "Digits in running text."
    assert [r["reason"].split(" ")[0] for r in result.refused] == ["empty", "reasoning", "reasoning"]
    assert client.temperatures == [0.0, 0.7, 0.7, 0.7]
    assert result.model == "scripted" and result.raw.endswith("running text.")


def test_explain_gives_up_with_every_refusal_recorded():
    config = AutoInterpConfig(explain_attempts=2)
    with pytest.raises(ExplanationRefused) as info:
        explain(Scripted(["   ", "word " * 100]), [{"role": "user", "content": "x"}], config)
    assert [r["reason"].split(" ")[0] for r in info.value.refused] == ["empty", "over-long"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("[EXPLANATION]: Digits and numbers.", "Digits and numbers."),
        ("Explanation: colour words", "colour words"),
        ('"The token er at the end of comparatives"', "The token er at the end of comparatives"),
    ],
)
def test_parse_explanation_accepts_short_explanations(answer, expected):
    assert parse_explanation(answer, AutoInterpConfig()) == expected


@pytest.mark.parametrize(
    "answer",
    ["", "[EXPLANATION]:", "Step 1: find tokens", "first line\nsecond line", "Words like <<red>>", "x" * 500],
)
def test_parse_explanation_refuses_non_explanations(answer):
    with pytest.raises(NotAnExplanation):
        parse_explanation(answer, AutoInterpConfig())


def test_parse_predictions():
    assert parse_predictions("Sure: [1, 0, 1]", 3) == [True, False, True]
    assert parse_predictions("[true,false]", 2) == [True, False]
    for bad in ("1 0 1", "[1,0]", "[1,2,0]"):
        with pytest.raises(BadPredictions):
            parse_predictions(bad, 3)


def test_invalid_answers_count_as_wrong_and_are_reported():
    config = AutoInterpConfig(n_shown=2, score_attempts=2)
    material = ScoringMaterial.from_dict(
        {
            "n_shown": 2,
            DETECTION: [["a", True, 0], ["b", False, None], ["c", True, 1], ["d", False, None]],
            FUZZING: [],
        }
    )
    # Batch 1: garbage twice (invalid -> both wrong); batch 2: [1,0] (both right).
    client = Scripted(["no idea", "still no idea", "[1,0]"])
    result = score_explanation(client, explanation="x", material=material, method=DETECTION, config=config)
    assert result.predictions == [None, None, True, False]
    assert (result.n_invalid, result.tp, result.tn, result.fp, result.fn) == (2, 1, 1, 1, 1)
    assert result.balanced_accuracy == pytest.approx(0.5)
    assert result.prompts == 2


def test_a_local_model_is_held_to_the_list_form_an_endpoint_is_only_asked_for():
    config = AutoInterpConfig(n_shown=3, score_attempts=1)
    rows = [["the cat sat", True, 0], ["a dog ran", False, None], ["on the mat", True, 1]] * 2
    material = ScoringMaterial.from_dict({"n_shown": 3, DETECTION: rows, FUZZING: []})
    with tiny_local_instruct() as client:
        held = score_explanation(client, explanation="cats", material=material, method=DETECTION, config=config)
        client.decodes_by_schema = False  # the same random model, asked in the prompt only: it writes noise
        free = score_explanation(client, explanation="cats", material=material, method=DETECTION, config=config)
    assert held.n_invalid == 0 and all(p is not None for p in held.predictions)
    assert all(parse_predictions(answer, 3) is not None for answer in held.answers)
    assert free.n_invalid == 6
    scripted = Scripted(["[1,0,1]", "[1,0,1]"])
    score_explanation(scripted, explanation="cats", material=material, method=DETECTION, config=config)
    assert scripted.schemas == [None, None]


def test_balanced_accuracy_matches_hand_computation():
    # 3 positives, 1 caught: recall 1/3; 5 negatives, 4 rejected: specificity 4/5.
    truth = [True, True, True, False, False, False, False, False]
    predicted = [True, False, False, False, False, False, False, True]
    assert balanced_accuracy(truth, predicted) == pytest.approx((1 / 3 + 4 / 5) / 2)
