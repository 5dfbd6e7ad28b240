"""Builders of tiny random language models for tests (no Django, no network): milliseconds to build."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from compute.ml.lm import LoadedModel, wrap_hf_model

# Three repeated paragraphs of astronomy, 120 documents: what the tiny models' SAEs are trained on.
TRAINING_TEXTS = [
    "The radio emission of the moon and planets is a new source of information about their atmospheres. " * 3,
    "Thermal conductivity of the surface layer was derived from the variation in infrared emission. " * 3,
    "Observations over three lunar cycles showed a phase lag between emission and illumination. " * 3,
] * 40


def byte_level_tokenizer() -> Any:
    """A tiny offline tokenizer: the 256 byte-level symbols after 3 SmolLM2-style special tokens (ids 0-2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(specials)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_end|>"],
    )
    tokenizer.init_kwargs["name_or_path"] = "tiny-byte-level"
    return tokenizer


MULTIBYTE_TEXT = "আমি বাংলায় গান গাই। 日本語のテキスト、東京。 Emoji 😀👍🏽 and ascii."


def trained_byte_level_tokenizer(text: str = MULTIBYTE_TEXT, vocab_size: int = 290) -> Any:
    """A GPT-2-style byte-level BPE trained offline on `text`: its merges make tokens that hold parts of
    characters (e.g. the 2-byte prefix shared by Bengali letters), as real byte-level vocabularies do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([text] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_random_hf_model(
    *, d_model: int = 32, n_layers: int = 2, n_heads: int = 4, d_mlp: int = 64, n_ctx: int = 256, seed: int = 0
) -> tuple[Any, Any]:
    """A randomly initialised Llama-architecture HF model and its byte-level tokenizer (not yet wrapped).

    Wrapping changes the module tree, so save this one (save_pretrained) to get a local model folder.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = byte_level_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=d_mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=max(1, n_heads // 2),
        max_position_embeddings=n_ctx,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        hf_model = LlamaForCausalLM(config).eval()
    finally:
        torch.random.set_rng_state(generator_state)
    return hf_model, tokenizer


def tiny_random_model(
    *,
    d_model: int = 32,
    n_layers: int = 2,
    n_heads: int = 4,
    d_mlp: int = 64,
    n_ctx: int = 256,
    seed: int = 0,
    device: str = "cpu",
) -> LoadedModel:
    """A randomly initialised Llama-architecture model with a byte-level tokenizer, for tests (milliseconds)."""
    hf_model, tokenizer = tiny_random_hf_model(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads, d_mlp=d_mlp, n_ctx=n_ctx, seed=seed
    )
    return wrap_hf_model(hf_model.to(device), tokenizer, name="tiny-random-llama", device=device)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@contextmanager
def tiny_local_instruct(location: str = "tiny-random-instruct", seed: int = 3) -> Iterator[Any]:
    """A tiny random instruct model (byte-level tokenizer, ChatML template) that `LocalInstructClient(location=...)`
    finds loaded, as a worker keeps SmolLM2; yields the client. It writes noise unless a schema holds it."""
    from compute.ml.llm import LocalInstructClient, _LocalModel

    hf_model, tokenizer = tiny_random_hf_model(seed=seed)
    tokenizer.chat_template = CHAT_TEMPLATE
    key = ("package", location, "", "cpu")
    _LocalModel._cache[key] = _LocalModel(hf_model, tokenizer)
    try:
        yield LocalInstructClient(location=location, retries=0)
    finally:
        del _LocalModel._cache[key]
