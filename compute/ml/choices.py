"""The names a job can be asked for, and hook-name rules. Imports nothing heavy, so the web process may use it too."""

from __future__ import annotations

import re
from pathlib import PurePath

METHODS = ("gsae", "finetune", "direct", "ssae")
DOMAIN_METHODS = ("finetune", "direct", "ssae")
METHOD_LABELS = {
    "gsae": "GSAE (on the general corpus)",
    "finetune": "GSAE-finetune",
    "direct": "Direct SAE",
    "ssae": "Specialized SAE (SSAE)",
}
ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu", "matryoshka_batchtopk")
ARCHITECTURE_LABELS = {
    "standard": "Standard (L1)",
    "topk": "TopK",
    "batchtopk": "BatchTopK (saved as JumpReLU)",
    "jumprelu": "JumpReLU (L0)",
    "matryoshka_batchtopk": "Matryoshka BatchTopK (saved as JumpReLU)",
}
K_ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk")  # sparsity set by k; the others by a coefficient
BATCHTOPK_ARCHITECTURES = ("batchtopk", "matryoshka_batchtopk")  # saved as JumpReLU with the learnt threshold
# The training-config field holding each architecture's sparsity sweep.
SWEEP_FIELDS = {
    "standard": "l1_coefficients",
    "topk": "ks",
    "batchtopk": "ks",
    "jumprelu": "l0_coefficients",
    "matryoshka_batchtopk": "ks",
}
# The nested prefixes of a Matryoshka SAE, as fractions of its width (the last level is the whole SAE).
MATRYOSHKA_FRACTIONS = (1 / 8, 1 / 4, 1 / 2)


def matryoshka_widths(d_sae: int) -> list[int]:
    """A Matryoshka SAE's nested widths, increasing, ending at `d_sae` (sae-lens's `matryoshka_widths`)."""
    return [*sorted({max(1, int(d_sae * f)) for f in MATRYOSHKA_FRACTIONS} - {d_sae}), d_sae]


PRECISIONS = ("auto", "float32", "bfloat16")  # of SAE training matmuls; see compute.ml.training.autocast_dtype

# Corpus file kinds, by file name suffix in any case (`notes.TXT` is a .txt file).
CORPUS_SUFFIXES = (".txt", ".jsonl", ".parquet", ".csv")


def corpus_file_suffix(name: str | PurePath) -> str:
    """A corpus file's kind: its name's suffix in lower case (`notes.JSONL` -> `.jsonl`; `""` when none)."""
    return PurePath(name).suffix.lower()


HOOK_RE = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)*$")
BLOCK_HOOK_RE = re.compile(r"^blocks\.(\d+)\.")


def default_hook_name(n_layers: int) -> str:
    """The residual stream after the middle block, the usual place for SAEs."""
    return f"blocks.{n_layers // 2}.hook_resid_post"


def hook_layer(hook_name: str) -> int | None:
    """The block index a hook name lives in (`blocks.7.hook_resid_post` -> 7), None outside the blocks."""
    match = BLOCK_HOOK_RE.match(hook_name)
    return int(match.group(1)) if match else None
