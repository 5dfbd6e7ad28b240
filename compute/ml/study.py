"""A whole study evaluated from one model pass per corpus.

A study compares a GSAE with the domain SAEs trained from it (GSAE-finetune, Direct, SSAE, each over a
sparsity sweep). Everything shared by its SAEs is computed once:

- on the held-out split of the domain corpus D, one clean forward per batch yields the clean loss and the
  hook's activations; every SAE encodes those activations once (reconstruction, L0, firing counts), and
  each *stack* (a list of SAEs whose outputs add up: `[gsae]`, `[direct]`, `[gsae, ssae]`) is patched in
  for one more forward from the same tokens, as is zero ablation;
- on the general corpus, one forward up to the hook yields the activations every SAE's frequencies come from.

Novelty (max cosine similarity of each domain feature to all GSAE features) is computed in blocks so a
16k x 16k comparison never holds the full similarity matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from sae_lens import SAE
from torch import Tensor

from compute.ml.activations import ActivationBatch, iter_windows_in_batches, outlier_mask, pad_windows, token_mask
from compute.ml.lm import LoadedModel


@dataclass
class StackFigures:
    """One stack on the domain split: reconstruction and patched loss (L0 counts every SAE of the stack)."""

    mse: float  # per token, summed over d_in
    fvu: float
    l0: float
    loss: float


@dataclass
class DomainPass:
    tokens: int  # kept activation positions (reconstruction, frequencies): ordinary, outliers left out
    loss_tokens: int  # predicted ordinary tokens (losses)
    clean: float
    zero_ablation: float
    stacks: dict[str, StackFigures]
    fired: dict[str, Tensor]  # per SAE key: [d_sae] firing counts (float64)
    excluded_positions: int = 0  # ordinary positions left out for outlier norms (never patched)
    outlier_norm_factor: float | None = None

    @property
    def excluded_share(self) -> float:
        return self.excluded_positions / max(self.tokens + self.excluded_positions, 1)

    def frequencies(self, key: str) -> Tensor:
        return self.fired[key] / max(self.tokens, 1)


@dataclass
class _Sums:
    sq_err: float = 0.0
    l0: float = 0.0
    loss: float = 0.0


@torch.no_grad()
def evaluate_domain(
    loaded: LoadedModel,
    windows: Iterable[Sequence[int]],
    *,
    hook_name: str,
    saes: Mapping[str, SAE],
    stacks: Mapping[str, Sequence[str]],
    batch_size: int = 8,
    device: str | None = None,
    on_batch=None,
    outlier_norm_factor: float | None = None,
    observe=None,
) -> DomainPass:
    """Losses (clean, zero ablation, each stack patched in), reconstruction and firing counts in one pass.

    `saes` maps a key to an SAE; `stacks` maps a stack name to the keys whose outputs add up. Only ordinary
    positions are patched (BOS / special / padding keep their activations, as in training); loss counts only
    targets that are ordinary tokens. With `outlier_norm_factor`, positions whose norm is above that multiple of
    their batch's median are measured nowhere and never patched, like BOS. `on_batch(tokens_done)` is called
    after each batch; `observe(ids, mask, feature_acts)` sees each batch's token ids [b, s], kept positions [b, s]
    and every SAE's feature activations.

    A synthetic world has no next-token loss: there the "loss" is the squared error per token, clean 0 and zero
    ablation replaced by mean ablation (the variance), so the fraction recovered against zero ablation is the
    explained variance and the fraction of the GSAE's gap is the part of the GSAE's squared error removed.
    """
    synthetic = bool(loaded.info.get("synthetic"))
    device = device or loaded.device
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    fired = {key: torch.zeros(sae.cfg.d_sae, dtype=torch.float64) for key, sae in saes.items()}
    sums = {name: _Sums() for name in stacks}
    clean_sum = zero_sum = 0.0
    tokens = loss_tokens = excluded = 0
    x_sum: Tensor | None = None
    x_sq = 0.0
    for batch in iter_windows_in_batches(windows, batch_size):
        ids, lengths = pad_windows(batch, pad_id)
        ids, lengths = ids.to(device), lengths.to(device)
        mask = token_mask(ids, loaded.special_token_ids, lengths)  # [b, s]
        target_mask = mask[:, 1:]
        captured: dict[str, Tensor] = {}
        logits = loaded.model.run_with_hooks(ids, fwd_hooks=[(hook_name, _capture_into(captured))])  # [b, s, d_vocab]
        if not synthetic:
            clean_sum += _loss_sum(logits, ids, target_mask)
        acts = captured["acts"]  # [b, s, d_in]
        if outlier_norm_factor is not None:
            outliers = outlier_mask(acts, mask, outlier_norm_factor)
            excluded += int(outliers.sum())
            mask = mask & ~outliers
        x = acts[mask].float()  # [n, d_in]
        # Each SAE encodes once; stacks add the decoded outputs.
        recon: dict[str, Tensor] = {}
        l0: dict[str, Tensor] = {}
        observed: dict[str, Tensor] = {}
        for key, sae in saes.items():
            feature_acts = sae.encode(acts)  # [b, s, d_sae]
            active = feature_acts > 0
            fired[key] += active[mask].sum(dim=0).double().cpu()
            l0[key] = active.float().sum(dim=-1)  # [b, s]
            recon[key] = sae.decode(feature_acts)  # [b, s, d_in]
            if observe is not None:
                observed[key] = feature_acts
            del feature_acts, active
        if observe is not None:
            observe(ids, mask, observed)
            observed.clear()
        for name, keys in stacks.items():
            out = torch.stack([recon[k] for k in keys]).sum(dim=0)  # [b, s, d_in]
            sq_err = float((out[mask].float() - x).pow(2).sum())
            sums[name].sq_err += sq_err
            sums[name].l0 += float(sum(l0[k] for k in keys)[mask].sum())
            if synthetic:
                sums[name].loss += sq_err
                continue
            patched = torch.where(mask[..., None], out.to(acts.dtype), acts)
            logits = loaded.model.run_with_hooks(ids, fwd_hooks=[(hook_name, _replace_with(patched))])
            sums[name].loss += _loss_sum(logits, ids, target_mask)
        tokens += x.shape[0]
        if synthetic:
            loss_tokens = tokens
        else:
            zeroed = torch.where(mask[..., None], torch.zeros_like(acts), acts)
            logits = loaded.model.run_with_hooks(ids, fwd_hooks=[(hook_name, _replace_with(zeroed))])
            zero_sum += _loss_sum(logits, ids, target_mask)
            loss_tokens += int(target_mask.sum())
        x_sum = x.sum(dim=0) if x_sum is None else x_sum + x.sum(dim=0)
        x_sq += float(x.pow(2).sum())
        if on_batch is not None:
            on_batch(tokens)
    if tokens == 0 or loss_tokens == 0:
        raise ValueError("No tokens to evaluate on.")
    variance = max(x_sq - float(x_sum.pow(2).sum()) / tokens, 1e-12)
    if synthetic:
        zero_sum = variance  # mean ablation: the squared error of predicting every activation by their mean
    return DomainPass(
        tokens=tokens,
        loss_tokens=loss_tokens,
        clean=clean_sum / loss_tokens,
        zero_ablation=zero_sum / loss_tokens,
        stacks={
            name: StackFigures(
                mse=s.sq_err / tokens, fvu=s.sq_err / variance, l0=s.l0 / tokens, loss=s.loss / loss_tokens
            )
            for name, s in sums.items()
        },
        fired=fired,
        excluded_positions=excluded,
        outlier_norm_factor=outlier_norm_factor,
    )


def _loss_sum(logits: Tensor, ids: Tensor, target_mask: Tensor) -> float:
    """Summed next-token cross-entropy over the targets that count."""
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none"
    ).view_as(target_mask)
    return float(losses[target_mask].sum())


def _capture_into(store: dict[str, Tensor]):
    def hook(acts: Tensor, hook=None) -> Tensor:
        store["acts"] = acts.detach()
        return acts

    return hook


def _replace_with(replacement: Tensor):
    def hook(acts: Tensor, hook=None) -> Tensor:
        return replacement

    return hook


@torch.no_grad()
def firing_counts(
    saes: Mapping[str, SAE], batches: Iterable[ActivationBatch], *, on_batch=None
) -> tuple[dict[str, Tensor], int]:
    """Per SAE, how many kept positions each feature fired on ([d_sae] float64), and the positions seen."""
    fired = {key: torch.zeros(sae.cfg.d_sae, dtype=torch.float64) for key, sae in saes.items()}
    tokens = 0
    for batch in batches:
        x = batch.flat()  # [n, d_in]
        if x.shape[0] == 0:
            continue
        for key, sae in saes.items():
            fired[key] += (sae.encode(x) > 0).sum(dim=0).double().cpu()
        tokens += x.shape[0]
        if on_batch is not None:
            on_batch(tokens)
    if tokens == 0:
        raise ValueError("No tokens to count feature frequencies on.")
    return fired, tokens


@torch.no_grad()
def max_cosine_chunked(vectors: Tensor, reference: Tensor, *, row_chunk: int = 1024, ref_chunk: int = 4096) -> Tensor:
    """For each row of vectors [n, d], the largest cosine similarity to any row of reference [m, d]: [n].

    Works block by block ([row_chunk, ref_chunk] similarities at a time, float32), so memory stays at the
    inputs plus a few blocks however large n x m is.
    """
    out = torch.full((vectors.shape[0],), -math.inf)
    for start in range(0, vectors.shape[0], row_chunk):
        rows = torch.nn.functional.normalize(vectors[start : start + row_chunk].float(), dim=-1)  # [r, d]
        best = torch.full((rows.shape[0],), -math.inf, device=rows.device)
        for ref_start in range(0, reference.shape[0], ref_chunk):
            ref = torch.nn.functional.normalize(reference[ref_start : ref_start + ref_chunk].float(), dim=-1)
            best = torch.maximum(best, (rows @ ref.T).max(dim=-1).values)  # [r]
        out[start : start + rows.shape[0]] = best.cpu()
    return out


@torch.no_grad()
def novelty_per_feature(sae: SAE, gsae: SAE, **chunks: int) -> dict[str, Tensor]:
    """Per feature of `sae`: max cosine of its decoder row to all GSAE decoder rows, and of its encoder
    column to all GSAE encoder columns: {"decoder": [d_sae], "encoder": [d_sae]}."""
    return {
        "decoder": max_cosine_chunked(sae.W_dec, gsae.W_dec, **chunks),  # W_dec [d_sae, d_in]
        "encoder": max_cosine_chunked(sae.W_enc.T, gsae.W_enc.T, **chunks),  # W_enc [d_in, d_sae]
    }


@torch.no_grad()
def random_direction_baseline(gsae: SAE, *, n: int = 2048, seed: int = 0, **chunks: int) -> dict[str, Tensor]:
    """Max cosine of random unit vectors (isotropic Gaussian directions) to the GSAE's decoder rows and
    encoder columns: what "no relation to the GSAE" looks like at this width."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n, gsae.cfg.d_in, generator=generator).to(gsae.W_dec.device)
    return {
        "decoder": max_cosine_chunked(directions, gsae.W_dec, **chunks),
        "encoder": max_cosine_chunked(directions, gsae.W_enc.T, **chunks),
    }
