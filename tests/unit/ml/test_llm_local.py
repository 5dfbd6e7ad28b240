"""The local instruct model's schema-constrained decoding, on a tiny random model (a random model writes noise,
so only the constraint can make its answer valid JSON)."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from compute.ml.decomposition import proposal_schema
from compute.ml.llm import enforcer_vocabulary, schema_token_filter
from tests.ml_factories import tiny_local_instruct, tiny_random_hf_model

SCHEMA = {
    "type": "object",
    "required": ["name", "phrases"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "phrases": {
            "type": "array",
            "minItems": 2,
            "maxItems": 3,
            "items": {"type": "string", "minLength": 1, "maxLength": 8},
        },
    },
}


@pytest.fixture(scope="module")
def tiny():
    hf_model, tokenizer = tiny_random_hf_model(seed=3)
    return hf_model, tokenizer, enforcer_vocabulary(tokenizer, tokenizer.eos_token_id)


def _sample(hf_model, tokenizer, seed: int, allowed=None) -> str:
    prompt = tokenizer("Answer in JSON:", return_tensors="pt")
    torch.manual_seed(seed)
    extra = {"prefix_allowed_tokens_fn": allowed} if allowed else {}
    with torch.no_grad():
        out = hf_model.generate(
            **prompt, max_new_tokens=120, do_sample=True, temperature=1.0, pad_token_id=tokenizer.pad_token_id, **extra
        )
    return tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_random_model_answers_valid_json_only_when_its_decoding_follows_the_schema(tiny, seed):
    hf_model, tokenizer, vocabulary = tiny
    free = _sample(hf_model, tokenizer, seed)
    with pytest.raises(ValueError):  # json.JSONDecodeError is a ValueError
        jsonschema.validate(json.loads(free), SCHEMA)
    constrained = _sample(hf_model, tokenizer, seed, schema_token_filter(vocabulary, SCHEMA))
    answer = json.loads(constrained)
    jsonschema.validate(answer, SCHEMA)  # the reference validator, not the enforcer, judges the answer
    assert 2 <= len(answer["phrases"]) <= 3


def test_the_local_client_gets_a_capped_proposal_on_its_first_try():
    schema = proposal_schema(n_components=1, n_phrases=3, capped=True)
    fields = schema["properties"]["components"]["items"]["properties"]
    for field in (fields["name"], fields["phrases"]["items"], fields["near_misses"]["items"]):
        field["maxLength"] = 6  # a random model's strings run to their limit: keep the answer short
    with tiny_local_instruct() as client:
        completion = client.complete(
            [{"role": "user", "content": "Propose sub-components."}],
            max_tokens=400,
            temperature=1.0,
            json_schema=schema,
        )
    jsonschema.validate(completion.data, schema)
    assert completion.attempts == []
    assert len(completion.data["components"]) == 1
    assert len(completion.data["components"][0]["phrases"]) == 3
    assert completion.params["json_mode"] == "constrained"


def test_capped_proposal_schema_bounds_the_lists_by_the_counts_asked():
    loose = proposal_schema(n_components=2, n_phrases=4)
    capped = proposal_schema(n_components=2, n_phrases=4, capped=True)
    answer = {
        "components": [{"name": f"c{i}", "phrases": ["a", "b", "c", "d", "e"], "near_misses": ["x"]} for i in range(3)]
    }
    jsonschema.validate(answer, loose)  # extra items are trimmed later, not refused, for any endpoint
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(answer, capped)
    answer["components"] = [{**c, "phrases": c["phrases"][:4]} for c in answer["components"][:2]]
    jsonschema.validate(answer, capped)
