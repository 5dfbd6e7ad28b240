"""Builders for the ML side of tests: a tiny random local language model and random sae-lens SAEs on disk."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from compute.models import SAE, LanguageModel


def tiny_model_folder(folder: Path, *, d_model: int = 16, seed: int = 0) -> Path:
    """Save a tiny random Llama-architecture model and its byte-level tokenizer as a local HF folder."""
    from tests.ml_factories import tiny_random_hf_model

    hf_model, tokenizer = tiny_random_hf_model(d_model=d_model, n_layers=2, seed=seed)
    hf_model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_language_model(folder: Path, *, name: str = "tiny", hook: str = "blocks.1.hook_resid_post") -> LanguageModel:
    tiny_model_folder(folder)
    return LanguageModel.objects.create(name=name, source="local", location=str(folder), default_hook=hook)


def random_sae(
    artifacts: Path,
    *,
    lm: LanguageModel,
    name: str,
    method: str,
    d_sae: int,
    dead: Iterable[int] = (),
    d_in: int = 16,
    seed: int = 0,
) -> SAE:
    """A ready SAE record whose weights are a random sae-lens StandardSAE saved in artifact storage.

    Encoder biases are spread so features fire at different rates; features in `dead` never fire.
    """
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    lens = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        lens.b_enc.normal_(0, 0.2)
        lens.b_enc[list(dead)] = -1e4
    lens.save_model(artifacts / "saes" / name)
    hook = lm.default_hook
    return SAE.objects.create(
        name=name, method=method, status="ready", language_model=lm, hook_name=hook, d_in=d_in, d_sae=d_sae,
        artifact_path=f"saes/{name}",
    )  # fmt: skip
