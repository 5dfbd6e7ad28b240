"""Hand a Llama-architecture model (SmolLM2 is one) to a peer environment as plain files.

TransformerLens 2.x has no SmolLM2 config and the Hub is unreachable, so a peer that needs a 2.x
`HookedTransformer` rebuilds one from what `save_llama` writes: `llama.json` (the architecture's fields,
read from our Hugging Face config) and `weights.safetensors` (the state dict as our model computes with
it). The peer side (`saedashboard_run.py`) builds a `HookedTransformerConfig` from those fields and converts
the weights with TransformerLens's own `convert_llama_weights`.

The fields are written explicitly rather than as a `config.json` because the two transformers versions
spell them differently: 5.x saves the rotary base under `rope_parameters`, which 4.x does not read (it
would silently fall back to a base of 10,000; SmolLM2's is 100,000).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LLAMA_FILE = "llama.json"
WEIGHTS_FILE = "weights.safetensors"


class UnsupportedModel(ValueError):
    """The model is not one the peer's Llama conversion reproduces (the message says which field)."""


def llama_fields(hf_config: Any) -> dict[str, Any]:
    """The fields of a Hugging Face Llama config that a TransformerLens 2.x Llama needs."""
    architectures = list(getattr(hf_config, "architectures", None) or [])
    if getattr(hf_config, "model_type", "") != "llama":
        raise UnsupportedModel(f"model_type {hf_config.model_type!r} is not llama ({architectures}).")
    rope = dict(getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None) or {})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise UnsupportedModel(f"rotary scaling {rope_type!r} has no TransformerLens 2.x Llama equivalent.")
    rope_theta = rope.get("rope_theta", getattr(hf_config, "rope_theta", None))
    if rope_theta is None:
        raise UnsupportedModel("the config names no rotary base (rope_theta).")
    if getattr(hf_config, "attention_bias", False) or getattr(hf_config, "mlp_bias", False):
        raise UnsupportedModel("attention or MLP biases: TransformerLens's Llama conversion assumes none.")
    n_heads = int(hf_config.num_attention_heads)
    d_head = int(getattr(hf_config, "head_dim", None) or hf_config.hidden_size // n_heads)
    return {
        "d_model": int(hf_config.hidden_size),
        "d_head": d_head,
        "n_heads": n_heads,
        "n_key_value_heads": int(getattr(hf_config, "num_key_value_heads", None) or n_heads),
        "d_mlp": int(hf_config.intermediate_size),
        "n_layers": int(hf_config.num_hidden_layers),
        "d_vocab": int(hf_config.vocab_size),
        "n_ctx": int(hf_config.max_position_embeddings),
        "eps": float(hf_config.rms_norm_eps),
        "act_fn": str(hf_config.hidden_act),
        "rope_theta": float(rope_theta),
        "tie_word_embeddings": bool(getattr(hf_config, "tie_word_embeddings", False)),
    }


def hf_state_dict(hf_model: Any) -> dict[str, Any]:
    """The model's weights under the plain transformers names, also once a TransformerBridge has wrapped it.

    The bridge wraps each module (`..._original_component...`) and adds aliases of the same tensors; the
    names a fresh transformers model of the same config has are the ones kept, and all of them must be found.
    """
    import torch

    with torch.device("meta"):
        names = set(type(hf_model)(hf_model.config).state_dict())
    state = {name.replace("._original_component", ""): t for name, t in hf_model.state_dict().items()}
    missing = names - set(state)
    if missing:
        raise UnsupportedModel(f"weights not found in the model: {sorted(missing)[:5]}")
    return {name: state[name] for name in sorted(names)}


def save_llama(hf_model: Any, folder: Path) -> Path:
    """Write `llama.json` and `weights.safetensors` for `hf_model` (a transformers LlamaForCausalLM) into `folder`."""
    import json

    from safetensors.torch import save_file

    fields = llama_fields(hf_model.config)
    folder.mkdir(parents=True, exist_ok=True)
    state = hf_state_dict(hf_model)
    if fields["tie_word_embeddings"]:
        state.pop("lm_head.weight", None)  # the same tensor as the embedding; the peer ties it again
    save_file({name: t.detach().float().contiguous().cpu() for name, t in state.items()}, str(folder / WEIGHTS_FILE))
    (folder / LLAMA_FILE).write_text(json.dumps(fields, indent=1))
    return folder
