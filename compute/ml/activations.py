"""Activations at one hook, streamed batch by batch (never a whole corpus's activations in memory)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from compute.ml.choices import hook_layer
from compute.ml.corpora import token_windows
from compute.ml.lm import LoadedModel


class ActivationBatch(NamedTuple):
    tokens: Tensor  # [batch, seq] long
    acts: Tensor  # [batch, seq, d_in]
    mask: Tensor  # [batch, seq] bool: False at BOS / special / padding positions

    def flat(self) -> Tensor:
        """The activations at the positions that count: [n_kept, d_in]."""
        return self.acts[self.mask]

    def without_outliers(self, factor: float | None) -> tuple[ActivationBatch, int]:
        """This batch with outlier-norm positions masked out too (see `outlier_mask`), and how many there were."""
        if factor is None:
            return self, 0
        outliers = outlier_mask(self.acts, self.mask, factor)
        return self._replace(mask=self.mask & ~outliers), int(outliers.sum())


def outlier_mask(acts: Tensor, mask: Tensor, factor: float) -> Tensor:
    """True at kept positions whose activation norm is above `factor` times the median norm of the kept positions
    of the batch: [batch, seq] bool (acts [batch, seq, d_in], mask [batch, seq]).

    Many language models put a few positions' residual stream at norms hundreds of times the rest ("massive
    activations"); an SAE trained or measured on them spends itself on them, so they are left out and counted.
    """
    norms = acts.float().norm(dim=-1)  # [batch, seq]
    kept = norms[mask]
    if kept.numel() == 0:
        return torch.zeros_like(mask)
    return mask & (norms > factor * kept.median())


class OutlierCount:
    """Positions seen and left out for outlier norms over a stream of batches; `as_dict` reports them."""

    def __init__(self, factor: float | None, seen: int = 0, excluded: int = 0) -> None:
        self.factor = factor
        self.seen = seen  # ordinary positions before the outlier rule
        self.excluded = excluded

    def filter(self, batch: ActivationBatch) -> ActivationBatch:
        """The batch without its outlier positions, counted."""
        self.seen += int(batch.mask.sum())
        kept, excluded = batch.without_outliers(self.factor)
        self.excluded += excluded
        return kept

    def filter_all(self, batches: Iterable[ActivationBatch]) -> Iterator[ActivationBatch]:
        return (self.filter(batch) for batch in batches)

    @property
    def share(self) -> float:
        return self.excluded / self.seen if self.seen else 0.0

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "outlier_norm_factor": self.factor,
            "excluded_positions": self.excluded,
            "excluded_share": self.share,
        }


def token_mask(tokens: Tensor, special_token_ids: set[int], lengths: Tensor | None = None) -> Tensor:
    """True where a token is an ordinary token inside its window: [batch, seq] bool."""
    mask = torch.ones_like(tokens, dtype=torch.bool)
    if special_token_ids:
        specials = torch.tensor(sorted(special_token_ids), device=tokens.device)
        mask &= ~torch.isin(tokens, specials)
    if lengths is not None:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        mask &= positions[None, :] < lengths[:, None]
    return mask


def iter_windows_in_batches(windows: Iterable[Sequence[int]], batch_size: int) -> Iterator[list[Sequence[int]]]:
    batch: list[Sequence[int]] = []
    for window in windows:
        batch.append(window)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def pad_windows(windows: list[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad to the longest window: (tokens [batch, seq], lengths [batch])."""
    lengths = torch.tensor([len(w) for w in windows], dtype=torch.long)
    tokens = torch.full((len(windows), int(lengths.max())), pad_id, dtype=torch.long)
    for row, window in enumerate(windows):
        tokens[row, : len(window)] = torch.as_tensor(list(window), dtype=torch.long)
    return tokens, lengths


@torch.no_grad()
def hook_activations(loaded: LoadedModel, tokens: Tensor, *, hook_name: str) -> Tensor:
    """One forward pass, stopped right after the hook's block: [batch, seq, d_in]."""
    layer = hook_layer(hook_name)
    stop = layer + 1 if layer is not None and layer + 1 < loaded.n_layers else None
    _, cache = loaded.model.run_with_cache(tokens, names_filter=[hook_name], stop_at_layer=stop)
    return cache[hook_name]


def iter_activation_batches(
    loaded: LoadedModel,
    windows: Iterable[Sequence[int]],
    *,
    hook_name: str,
    batch_size: int,
    device: str | None = None,
    skip_batches: int = 0,
) -> Iterator[ActivationBatch]:
    """Run the model over windows of token ids, `batch_size` windows at a time, yielding the hook's activations.

    Windows may differ in length (right padding; padding is masked out, and causal attention keeps
    it from changing earlier positions). The first `skip_batches` batches are passed over without running
    the model (a resumed training run has trained on them).
    """
    if not loaded.has_hook(hook_name):
        raise ValueError(f"The model has no hook {hook_name!r}.")
    device = device or loaded.device
    pad_id = loaded.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = loaded.tokenizer.eos_token_id or 0
    for index, batch in enumerate(iter_windows_in_batches(windows, batch_size)):
        if index < skip_batches:
            continue
        tokens, lengths = pad_windows(batch, pad_id)
        tokens = tokens.to(device)
        acts = hook_activations(loaded, tokens, hook_name=hook_name)  # [batch, seq, d_in]
        mask = token_mask(tokens, loaded.special_token_ids, lengths.to(device))
        yield ActivationBatch(tokens=tokens, acts=acts, mask=mask)


def window_stream(
    texts: Iterable[str], tokenizer: Any, *, split: str, budget: int | None, context_size: int
) -> Iterator[list[int]]:
    """Token windows of a corpus's split ("train", "eval" or "all"), `budget // context_size` of them at most
    (at least one); budget None reads the whole split."""
    max_windows = None if budget is None else max(1, budget // context_size)
    return token_windows(texts, tokenizer, context_size, split=split, max_windows=max_windows)


def activation_stream(
    texts: Iterable[str],
    loaded: LoadedModel,
    hook_name: str,
    *,
    split: str,
    budget: int | None,
    context_size: int,
    batch_size: int,
    device: str | None = None,
    skip_batches: int = 0,
) -> Iterator[ActivationBatch]:
    """The one path from a corpus to activations, shared by training, evaluation and dashboards:
    documents -> windows of `context_size` tokens (see `window_stream`) -> batches of `batch_size` windows
    -> the hook's activations, one batch at a time (after the first `skip_batches`, which the model skips)."""
    windows = window_stream(texts, loaded.tokenizer, split=split, budget=budget, context_size=context_size)
    return iter_activation_batches(
        loaded, windows, hook_name=hook_name, batch_size=batch_size, device=device, skip_batches=skip_batches
    )
