"""Batched phrase measurement against one-text-at-a-time brute force; classification against hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from compute.ml.decomposition import ComponentsError, Thresholds, classify, clean_components, measure_texts
from tests.ml_factories import tiny_random_model

TEXTS = ["physics", "the theory of relativity was new", "E = mc^2", "a much longer phrase " * 6, "x"]


@pytest.fixture(scope="module")
def model_and_encoder():
    loaded = tiny_random_model(d_model=32, n_layers=2, seed=1)
    torch.manual_seed(0)
    w_enc = torch.randn(32, 10)
    b_enc = torch.randn(10) * 0.5

    def encode(acts):
        return torch.relu(acts @ w_enc + b_enc)

    return loaded, encode


def brute_force(loaded, encode, text, feature, max_tokens):
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    tokens = torch.tensor([[loaded.tokenizer.bos_token_id, *ids]])
    _, cache = loaded.model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post"])
    return encode(cache["blocks.0.hook_resid_post"])[0, 1:, feature].tolist()


def test_batched_measurement_matches_one_text_at_a_time(model_and_encoder):
    loaded, encode = model_and_encoder
    features = [3, 3, 7, 3, 0]
    results = measure_texts(
        loaded, encode, hook_name="blocks.0.hook_resid_post", feature_index=features, texts=TEXTS,
        max_tokens=40, batch_size=2,
    )  # fmt: skip
    assert len(results) == len(TEXTS)
    for text, feature, result in zip(TEXTS, features, results, strict=True):
        expected = brute_force(loaded, encode, text, feature, 40)
        assert result["values"] == pytest.approx(expected, abs=1e-4)
        assert len(result["tokens"]) == len(expected)  # BOS excluded
        assert result["max"] == pytest.approx(max(expected), abs=1e-4)
        assert result["n_active"] == sum(v > 0 for v in expected)
        assert result["total"] == pytest.approx(sum(expected), abs=1e-3)
    assert results[3]["cut"] is True and results[0]["cut"] is False
    assert "".join(results[1]["tokens"]) == TEXTS[1]


def test_classification_by_hand():
    thresholds = Thresholds(activation=0.3, margin=0.1, clean_share=0.8, partly_share=0.4)
    corpus_max = 10.0
    components = [
        # median 6 -> 0.6; near misses median 1 -> 0.1; general median 2 -> 0.2; margin 0.4: activates
        {"name": "a", "phrase_maxima": [6, 9, 1], "control_maxima": [1, 0, 3]},
        # median 5 -> 0.5 but near misses 0.45: margin 0.05 < 0.1: does not count
        {"name": "b", "phrase_maxima": [5, 5, 5], "control_maxima": [4.5, 4.5, 4.5]},
        # median 2 -> 0.2: below 0.3, and no better than the general controls
        {"name": "c", "phrase_maxima": [2, 2, 9], "control_maxima": [0, 0, 0]},
    ]
    verdict = classify(components, [2, 2, 0, 4], corpus_max=corpus_max, thresholds=thresholds)
    a, b, c = verdict["components"]
    assert verdict["general_level"] == pytest.approx(0.2)
    assert a["margin"] == pytest.approx(0.4) and a["activates"]
    assert b["above_threshold"] and not b["beats_controls"] and b["margin"] == pytest.approx(0.05)
    assert not c["above_threshold"] and c["margin"] == pytest.approx(0.0)  # general controls reach 0.2 too
    assert verdict["n_activating"] == 1 and verdict["share"] == pytest.approx(1 / 3)
    assert verdict["class"] == "not"  # 1/3 < 0.4
    assert classify(components[:2], [0], corpus_max=corpus_max, thresholds=thresholds)["class"] == "partly"
    assert classify(components[:1], [0], corpus_max=corpus_max, thresholds=thresholds)["class"] == "cleanly"


def test_a_feature_that_fires_on_everything_does_not_decompose():
    components = [{"name": n, "phrase_maxima": [9, 9, 9], "control_maxima": [9, 9, 9]} for n in "abcde"]
    verdict = classify(components, [9, 9, 9], corpus_max=10.0, thresholds=Thresholds())
    assert verdict["class"] == "not"
    assert all(row["above_threshold"] and row["margin"] == 0 for row in verdict["components"])


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError):
        Thresholds(clean_share=0.3, partly_share=0.5)


# What SmolLM2-135M proposed in the demo, held to the schema: well-formed, but two sub-components repeat phrases.
DEMO_PROPOSAL = [
    {"name": "A", "phrases": ["A", "Physics", "Athlete"], "near_misses": ["A", "Physics", "Athlete"]},
    {"name": "B", "phrases": ["B", "Biology", "Biology"], "near_misses": ["Biology", "Biology", "Biology"]},
    {"name": "a", "phrases": ["x", "y", "z"], "near_misses": []},
]


def test_typed_sub_components_are_refused_at_the_first_problem():
    with pytest.raises(ComponentsError, match="'B' has 2 distinct phrase"):
        clean_components(DEMO_PROPOSAL)


def test_a_proposal_keeps_its_usable_sub_components_and_says_what_it_left_out():
    components, warnings = clean_components(DEMO_PROPOSAL, n_components=3, n_phrases=3, drop_invalid=True)
    assert components == [DEMO_PROPOSAL[0]]
    assert warnings == [
        "Sub-component 2 left out: 'B' has 2 distinct phrase(s); each sub-component needs at least 3.",
        "Sub-component 3 left out: Two sub-components are both called 'a'.",
        "1 sub-components of the 3 asked for.",
    ]
    with pytest.raises(ComponentsError, match="No usable sub-component .*'B' has 2 distinct"):
        clean_components(DEMO_PROPOSAL[1:2], drop_invalid=True)
