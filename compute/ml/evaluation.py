"""Evaluating SAEs the way the domain-specific study does.

An SAE "stack" is a list of SAEs whose outputs add up: `[gsae]`, `[direct]`, or `[gsae, ssae]`
(GSAE+SSAE acting as one wider SAE; its L0 is the sum of both L0s).
- reconstruction: MSE, fraction of variance unexplained, L0 on activation batches;
- loss recovered: the LM's cross-entropy with the stack's reconstruction patched in at the hook,
  against the clean loss, zero ablation, and the GSAE alone (the study's fraction);
- feature frequencies on general text (feature rarity);
- novelty: each feature's max cosine similarity to any GSAE feature, for decoder rows and encoder columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from sae_lens import SAE
from torch import Tensor

from compute.ml.activations import ActivationBatch, OutlierCount, outlier_mask, pad_windows, token_mask
from compute.ml.lm import LoadedModel


@torch.no_grad()
def stack_reconstruct(saes: Sequence[SAE], x: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of the stack's reconstructions of x [..., d_in], and the total number of active features [...]."""
    out = torch.zeros_like(x)
    l0 = torch.zeros(x.shape[:-1], device=x.device)
    for sae in saes:
        acts = sae.encode(x)  # [..., d_sae]
        out = out + sae.decode(acts)
        l0 = l0 + (acts > 0).float().sum(dim=-1)
    return out, l0


@dataclass
class ReconstructionStats:
    tokens: int  # ordinary positions measured (outliers left out)
    mse: float  # per token, summed over d_in, raw units
    fvu: float  # fraction of variance unexplained
    l0: float
    excluded_positions: int = 0  # left out for outlier norms
    excluded_share: float = 0.0  # of the ordinary positions read
    outlier_norm_factor: float | None = None

    @property
    def explained_variance(self) -> float:
        return 1.0 - self.fvu

    def as_dict(self) -> dict[str, float | int | None]:
        return {**self.__dict__, "explained_variance": self.explained_variance}


@torch.no_grad()
def reconstruction_stats(
    saes: Sequence[SAE], batches: Iterable[ActivationBatch], *, outlier_norm_factor: float | None = None
) -> ReconstructionStats:
    """Streaming reconstruction figures over the kept positions of every batch (without outlier-norm positions
    when `outlier_norm_factor` is given: see `compute.ml.activations.outlier_mask`)."""
    return reconstruction_stats_many({"stack": saes}, batches, outlier_norm_factor=outlier_norm_factor)["stack"]


@torch.no_grad()
def reconstruction_stats_many(
    stacks: dict[str, Sequence[SAE]], batches: Iterable[ActivationBatch], *, outlier_norm_factor: float | None = None
) -> dict[str, ReconstructionStats]:
    """reconstruction_stats for several stacks from one pass over the batches (one model pass for all)."""
    outliers = OutlierCount(outlier_norm_factor)
    batches = outliers.filter_all(batches)
    tokens = 0
    sq_err = dict.fromkeys(stacks, 0.0)
    l0_sum = dict.fromkeys(stacks, 0.0)
    x_sum: Tensor | None = None
    x_sq = 0.0
    for batch in batches:
        x = batch.flat().float()  # [n, d_in]
        if x.shape[0] == 0:
            continue
        for key, saes in stacks.items():
            out, l0 = stack_reconstruct(saes, x)
            sq_err[key] += float((out - x).pow(2).sum())
            l0_sum[key] += float(l0.sum())
        tokens += x.shape[0]
        x_sum = x.sum(dim=0) if x_sum is None else x_sum + x.sum(dim=0)
        x_sq += float(x.pow(2).sum())
    if tokens == 0:
        raise ValueError("No tokens to evaluate on.")
    # Total variance around the mean: sum |x|^2 - n |mean|^2.
    variance = max(x_sq - float(x_sum.pow(2).sum()) / tokens, 1e-12)
    return {
        key: ReconstructionStats(
            tokens=tokens,
            mse=sq_err[key] / tokens,
            fvu=sq_err[key] / variance,
            l0=l0_sum[key] / tokens,
            excluded_positions=outliers.excluded,
            excluded_share=outliers.share,
            outlier_norm_factor=outlier_norm_factor,
        )
        for key in stacks
    }


@dataclass
class LossRecovered:
    tokens: int
    clean: float
    zero_ablation: float
    patched: float
    gsae: float | None  # the GSAE alone patched in (when a GSAE was given)

    @property
    def fraction_vs_zero(self) -> float:
        """(L_zero - L_sae) / (L_zero - L_clean): 1 is perfect, 0 is no better than zero ablation."""
        return _fraction(self.zero_ablation, self.patched, self.clean)

    @property
    def fraction_vs_gsae(self) -> float | None:
        """The study's figure: (L_gsae - L_sae) / (L_gsae - L_clean), the part of the GSAE's loss gap recovered."""
        return None if self.gsae is None else _fraction(self.gsae, self.patched, self.clean)

    def as_dict(self) -> dict[str, float | int | None]:
        return {**self.__dict__, "fraction_vs_zero": self.fraction_vs_zero, "fraction_vs_gsae": self.fraction_vs_gsae}


def _fraction(reference: float, patched: float, clean: float) -> float:
    gap = reference - clean
    return (reference - patched) / gap if abs(gap) > 1e-12 else math.nan


@torch.no_grad()
def loss_recovered(
    loaded: LoadedModel,
    windows: Iterable[Sequence[int]],
    *,
    hook_name: str,
    saes: Sequence[SAE],
    gsae: SAE | None = None,
    batch_size: int = 8,
    device: str | None = None,
    outlier_norm_factor: float | None = None,
) -> LossRecovered:
    """Next-token cross-entropy (mean over predicted ordinary tokens) clean, zero-ablated, and patched.

    Only ordinary positions are patched; BOS / special / padding positions, and outlier-norm positions when
    `outlier_norm_factor` is given, keep their activations, as they are excluded from SAE training.
    """
    device = device or loaded.device
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    variants: dict[str, Sequence[SAE] | None] = {"clean": None, "zero": (), "patched": saes}
    if gsae is not None:
        variants["gsae"] = [gsae]
    totals = dict.fromkeys(variants, 0.0)
    count = 0
    batch: list[Sequence[int]] = []

    def run(batch_windows: list[Sequence[int]]) -> None:
        nonlocal count
        tokens, lengths = pad_windows(batch_windows, pad_id)
        tokens, lengths = tokens.to(device), lengths.to(device)
        mask = token_mask(tokens, loaded.special_token_ids, lengths)  # [b, s]
        # Predict token t+1 from position t; count only targets that are ordinary tokens.
        target_mask = mask[:, 1:]
        count += int(target_mask.sum())
        for name, stack in variants.items():
            hooks = [] if stack is None else [(hook_name, _patch_hook(stack, mask, outlier_norm_factor))]
            logits = loaded.model.run_with_hooks(tokens, fwd_hooks=hooks)  # [b, s, d_vocab]
            losses = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none"
            ).view_as(target_mask)
            totals[name] += float(losses[target_mask].sum())

    for window in windows:
        batch.append(window)
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if count == 0:
        raise ValueError("No tokens to evaluate on.")
    return LossRecovered(
        tokens=count,
        clean=totals["clean"] / count,
        zero_ablation=totals["zero"] / count,
        patched=totals["patched"] / count,
        gsae=totals["gsae"] / count if gsae is not None else None,
    )


def _patch_hook(stack: Sequence[SAE], mask: Tensor, outlier_norm_factor: float | None = None):
    def hook(acts: Tensor, hook=None) -> Tensor:  # acts [b, s, d_in]
        patch = mask if outlier_norm_factor is None else mask & ~outlier_mask(acts, mask, outlier_norm_factor)
        if stack:
            replacement, _ = stack_reconstruct(stack, acts)
        else:
            replacement = torch.zeros_like(acts)
        return torch.where(patch[..., None], replacement.to(acts.dtype), acts)

    return hook


@torch.no_grad()
def feature_frequencies(sae: SAE, batches: Iterable[ActivationBatch]) -> tuple[Tensor, int]:
    """How often each feature fires over the kept positions: ([d_sae] fraction of tokens, tokens seen)."""
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.float64)
    tokens = 0
    for batch in batches:
        x = batch.flat()
        if x.shape[0] == 0:
            continue
        fired += (sae.encode(x) > 0).sum(dim=0).double().cpu()
        tokens += x.shape[0]
    if tokens == 0:
        raise ValueError("No tokens to count feature frequencies on.")
    return (fired / tokens).float(), tokens


@torch.no_grad()
def max_cosine_similarity(vectors: Tensor, reference: Tensor, *, chunk: int = 4096) -> Tensor:
    """For each row of vectors [n, d], the largest cosine similarity to any row of reference [m, d]: [n]."""
    v = torch.nn.functional.normalize(vectors.float(), dim=-1)
    r = torch.nn.functional.normalize(reference.float(), dim=-1)
    out = torch.empty(v.shape[0])
    for start in range(0, v.shape[0], chunk):
        out[start : start + chunk] = (v[start : start + chunk] @ r.T).max(dim=-1).values.cpu()
    return out


@torch.no_grad()
def novelty(sae: SAE, gsae: SAE) -> dict[str, Tensor]:
    """Per feature of `sae`: max cosine similarity of its decoder row and encoder column to the GSAE's: [d_sae] each."""
    return {
        "decoder": max_cosine_similarity(sae.W_dec, gsae.W_dec),  # W_dec [d_sae, d_in]
        "encoder": max_cosine_similarity(sae.W_enc.T, gsae.W_enc.T),  # W_enc [d_in, d_sae]
    }


def histogram(values: Tensor, *, bins: int, low: float, high: float) -> dict[str, list[float]]:
    """Counts of values in equal bins over [low, high] (values outside are clamped into the end bins)."""
    counts = torch.histc(values.float().clamp(low, high), bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def log_frequency_histogram(frequencies: Tensor, *, bins: int = 40, floor: float = 1e-8) -> dict[str, list[float]]:
    """Histogram of log10 feature frequencies; dead features (frequency 0) sit at log10(floor), as in the study."""
    return histogram(torch.log10(frequencies.clamp_min(floor)), bins=bins, low=math.log10(floor), high=0.0)
