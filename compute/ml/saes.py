"""Saved SAEs that describe themselves, and a loader that never hands out an SSAE alone.

Every folder we write is an sae-lens folder (`cfg.json` + `sae_weights.safetensors`, loaded by stock
`SAE.load_from_disk`) plus `sparsity.safetensors` (log10 feature firing frequency, as sae-lens's runner
saves it). An SSAE is trained on the residual x - GSAE(x): used alone it reconstructs nothing useful, so its
`cfg.json` metadata names its GSAE and a hash of the GSAE's weights, and `load_sae` returns the GSAE + SSAE
composite, refusing to load an SSAE without the GSAE it was trained against.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from sae_lens import SAE
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

SPARSITY_FILENAME = "sparsity.safetensors"  # sae-lens's name (sae_lens.constants.SPARSITY_FILENAME)


class SAELoadError(ValueError):
    """A folder that cannot be loaded as asked; the message says what to pass instead."""


def weights_sha256(sae: nn.Module) -> str:
    """A hash of the SAE's weights (names, shapes, dtypes and float32 values), independent of the file format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(sae.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_sparsity(folder: Path, fired: Tensor, tokens: int) -> None:
    """log10 of each feature's firing frequency over `tokens` tokens ([d_sae]), as sae-lens's runner saves it."""
    frequency = fired.double() / max(tokens, 1)
    save_file({"sparsity": torch.log10(frequency + 1e-10).float().contiguous()}, str(folder / SPARSITY_FILENAME))


def load_sparsity(folder: Path) -> Tensor | None:
    path = Path(folder) / SPARSITY_FILENAME
    return load_file(str(path))["sparsity"] if path.is_file() else None


class GSAEPlusSSAE(nn.Module):
    """An SSAE with its GSAE: reconstructs x as GSAE(x) + SSAE(x); `encode` gives the SSAE's own features."""

    def __init__(self, gsae: SAE, ssae: SAE) -> None:
        super().__init__()
        self.gsae, self.ssae = gsae, ssae
        self.cfg = ssae.cfg

    @property
    def stack(self) -> list[SAE]:
        """The SAEs whose reconstructions add up (what compute.ml.evaluation's stack functions take)."""
        return [self.gsae, self.ssae]

    def encode(self, x: Tensor) -> Tensor:  # [..., d_in] -> [..., d_sae of the SSAE]
        return self.ssae.encode(x)

    def forward(self, x: Tensor) -> Tensor:  # [..., d_in] -> [..., d_in]
        return self.gsae(x) + self.ssae(x)


def gsae_reference(gsae: SAE, *, name: str) -> dict[str, str]:
    """What an SSAE's cfg.json metadata records of its GSAE."""
    return {"gsae_name": name, "gsae_weights_sha256": weights_sha256(gsae)}


def load_sae(folder: Path | str, *, gsae: SAE | Path | str | None = None, device: str = "cpu") -> SAE | GSAEPlusSSAE:
    """An SAE folder as an sae-lens SAE, or, for an SSAE, the GSAE + SSAE composite.

    An SSAE needs `gsae` (its GSAE, loaded or as a folder); the GSAE's weights must hash to what the SSAE
    recorded. Passing a GSAE for an ordinary SAE is refused too: it would not be used.
    """
    sae = SAE.load_from_disk(str(folder), device=device)
    metadata = sae.cfg.metadata
    expected = metadata.get("gsae_weights_sha256")
    if metadata.get("method") != "ssae":
        if gsae is not None:
            raise SAELoadError(f"{folder} is not a Specialized SAE: load it without a GSAE.")
        return sae
    if expected is None:
        raise SAELoadError(f"{folder} is an SSAE but does not record its GSAE; it was saved by an older version.")
    if gsae is None:
        raise SAELoadError(
            f"{folder} is a Specialized SAE trained on the residual of GSAE {metadata.get('gsae_name')!r} "
            f"(weights sha256 {expected[:12]}…). Used alone it does not reconstruct activations: load it with "
            "load_sae(folder, gsae=<that GSAE's folder>)."
        )
    if not isinstance(gsae, SAE):
        gsae = SAE.load_from_disk(str(gsae), device=device)
    actual = weights_sha256(gsae)
    if actual != expected:
        raise SAELoadError(
            f"The GSAE given has weights sha256 {actual[:12]}…, but {folder} was trained against "
            f"{metadata.get('gsae_name')!r} with {expected[:12]}…: pass that GSAE."
        )
    return GSAEPlusSSAE(gsae, sae)
