"""Feature dashboards for every feature of an SAE from one stream of activations.

The model runs once per corpus. Its activations are streamed batch by batch (optionally
through an on-disk cache, so that wide SAEs can be processed in chunks of features without
running the model again) and, per chunk of features, two passes over the activations compute:

pass 1: exact running top-k contexts per feature (distinct windows, ties broken by corpus
        position), firing counts, sums, and an exact histogram over fixed log-spaced bins;
pass 2: quantile-stratified samples (bins from pass 1's histogram; inside a bin, the examples
        with the smallest hash priority, i.e. a deterministic uniform sample) and an exact
        linear histogram from 0 to each feature's max (known after pass 1).

Memory is a function of (d_sae chunk, k, window, bins) and one batch, never of corpus size.
Positions where `mask` is False (BOS, special tokens, padding) never count: their activations
are zeroed before anything is computed.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from compute.ml.activations import ActivationBatch
from compute.ml.config import DashboardJobConfig

# Corpus positions are identified by gid = sequence_number * POS_STRIDE + position.
POS_STRIDE = 1 << 20
# Fixed log-spaced histogram: LOG_RES bins per octave over 2**-LOG_OCTAVES .. 2**LOG_OCTAVES.
LOG_RES = 16
LOG_OCTAVES = 16
N_LOG_BINS = 2 * LOG_RES * LOG_OCTAVES
_INT64_MAX = torch.iinfo(torch.int64).max


class BatchLike(Protocol):
    tokens: Tensor  # [b, s] long
    acts: Tensor  # [b, s, d_in]
    mask: Tensor  # [b, s] bool, False at BOS/special/padding


_JOB = DashboardJobConfig()  # the job options (defaults and bounds) are declared in compute.ml.config


@dataclass(frozen=True)
class DashboardConfig:
    top_k: int = _JOB.top_k
    ctx_before: int = _JOB.ctx_before
    ctx_after: int = _JOB.ctx_after
    n_quantile_bins: int = _JOB.n_quantile_bins
    per_bin: int = _JOB.per_bin
    hist_bins: int = 30
    n_logit_tokens: int = _JOB.n_logit_tokens
    seed: int = 0

    @property
    def width(self) -> int:
        return self.ctx_before + 1 + self.ctx_after

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# ----------------------------------------------------------------------------- small helpers


def _u64(value: int) -> int:
    """A 64-bit constant as the signed int64 torch stores."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_SM1, _SM2, _SM3 = _u64(0x9E3779B97F4A7C15), _u64(0xBF58476D1CE4E5B9), _u64(0x94D049BB133111EB)


def _lshr(x: Tensor, s: int) -> Tensor:
    """Logical (not arithmetic) right shift of int64, so the mix below stays a bijection."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def splitmix64(x: Tensor) -> Tensor:
    """A bijective 64-bit mix (int64 arithmetic wraps): distinct inputs get distinct priorities."""
    z = x + _SM1
    z = (z ^ _lshr(z, 30)) * _SM2
    z = (z ^ _lshr(z, 27)) * _SM3
    return z ^ _lshr(z, 31)


def sample_priority(gids: Tensor, features: Tensor, d_sae_total: int, seed: int) -> Tensor:
    """Deterministic pseudo-random priority of (position, feature); smaller is sampled first."""
    return splitmix64(gids * d_sae_total + features + seed * 0x5851F42D)


def log_bin_index(values: Tensor) -> Tensor:
    """Index into the fixed log-spaced histogram for positive values (clamped at both ends)."""
    idx = torch.floor(torch.log2(values.float()) * LOG_RES).long()
    return idx.clamp(-LOG_RES * LOG_OCTAVES, LOG_RES * LOG_OCTAVES - 1) + LOG_RES * LOG_OCTAVES


def log_bin_edges() -> Tensor:
    """[N_LOG_BINS + 1] edges of the fixed log histogram (first and last bins are open-ended)."""
    exps = (torch.arange(N_LOG_BINS + 1, dtype=torch.float64) - LOG_RES * LOG_OCTAVES) / LOG_RES
    edges = torch.pow(2.0, exps)
    edges[0] = 0.0
    edges[-1] = math.inf
    return edges


def quantile_lookup(log_hist: Tensor, n_bins: int) -> Tensor:
    """Map each fine log bin to a quantile bin: [c, N_LOG_BINS] -> [c, N_LOG_BINS] in [0, n_bins).

    A fine bin goes to the quantile bin where its first value falls by rank, so each quantile bin
    holds about 1/n_bins of the firing positions (less where one fine bin spans several quantiles).
    """
    counts = log_hist.to(torch.float64)
    total = counts.sum(1, keepdim=True).clamp_min(1.0)
    before = torch.cumsum(counts, 1) - counts
    return torch.floor(before * n_bins / total).long().clamp(0, n_bins - 1)


def _stable_order(values: Tensor, gids: Tensor) -> Tensor:
    """Indices sorting each row by value descending, then corpus position ascending."""
    by_gid = torch.argsort(gids, dim=1, stable=True)
    by_val = torch.argsort(torch.gather(values, 1, by_gid), dim=1, descending=True, stable=True)
    return torch.gather(by_gid, 1, by_val)


def _window_hash(win_tokens: Tensor, weights: Tensor) -> Tensor:
    """[..., w] token windows -> [...] int64 hash, for showing duplicated texts once."""
    return splitmix64(((win_tokens.long() + 2) * weights).sum(-1))


def _first_occurrence(hashes: Tensor) -> Tensor:
    """[r, M] -> bool [r, M]: True where no earlier entry in the row has the same hash."""
    by_hash = torch.argsort(hashes, dim=1, stable=True)
    h = torch.gather(hashes, 1, by_hash)
    first_sorted = torch.ones_like(h, dtype=torch.bool)
    first_sorted[:, 1:] = h[:, 1:] != h[:, :-1]
    return torch.empty_like(first_sorted).scatter_(1, by_hash, first_sorted)


def _top_distinct(values: Tensor, gids: Tensor, hashes: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k best entries per row by (value desc, gid asc), positive values only, one per window text.

    values, gids, hashes: [r, M]. Returns (pick [r, k] indices into M, kept [r, k]: a real entry).
    """
    order = _stable_order(values, gids)
    # Non-positive entries sort after every positive one, so they never hide a positive duplicate.
    keep = (torch.gather(values, 1, order) > 0) & _first_occurrence(torch.gather(hashes, 1, order))
    rank = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
    return torch.gather(order, 1, rank), torch.gather(keep, 1, rank)


class _BatchView:
    """One batch as a chunk of features sees it: activations [c, n], corpus positions, window hashes, windows."""

    def __init__(self, tokens: Tensor, feats: Tensor, gid_of: Tensor, config: DashboardConfig, weights: Tensor):
        b, s = tokens.shape
        self.s = s
        self.feats = feats.reshape(b * s, -1)  # [n, c], contiguous
        self.feats_t = self.feats.T  # [c, n]
        self.gid_of = gid_of  # [n]
        padded = torch.nn.functional.pad(tokens, (config.ctx_before, config.ctx_after), value=-1)
        # The window of tokens around every position [n, w], and its hash: duplicates are found without gathering.
        self.win_tokens = padded.unfold(1, config.width, 1).reshape(b * s, config.width)
        self.hash_of = _window_hash(self.win_tokens, weights)  # [n]
        self.offsets = torch.arange(-config.ctx_before, config.ctx_after + 1, device=tokens.device)

    def windows(self, features: Tensor, flat_idx: Tensor) -> tuple[Tensor, Tensor]:
        """Pairs (feature row [e], flat position [e]) -> window tokens [e, w] (-1 outside) and values [e, w]."""
        pos = (flat_idx % self.s)[:, None] + self.offsets  # [e, w] positions in the sequence
        inside = (pos >= 0) & (pos < self.s)
        n, c = self.feats.shape
        flat = (flat_idx[:, None] + self.offsets).clamp(0, n - 1)
        values = self.feats.view(-1)[flat * c + features[:, None]] * inside  # one 1-d gather
        return self.win_tokens[flat_idx], values


def _take_windows(
    old_tok: Tensor, old_val: Tensor, src: Tensor, n_old: int, new_idx: Tensor, view: _BatchView, rows: Tensor
) -> tuple[Tensor, Tensor]:
    """Windows of the selected entries: src [r, ...] indexes old entries (< n_old) or batch candidates.

    old_tok, old_val: [r, n_old, w]; new_idx: [r, m] flat positions of the batch candidates.
    Only the entries that come from the batch gather a window from it.
    """
    shape = src.shape
    src2 = src.reshape(shape[0], -1)
    w = old_tok.shape[-1]
    from_old = src2.clamp_max(n_old - 1)[..., None].expand(-1, -1, w)
    tok = torch.gather(old_tok, 1, from_old)
    val = torch.gather(old_val, 1, from_old)
    r_i, e_i = (src2 >= n_old).nonzero(as_tuple=True)
    if r_i.numel():
        flat = new_idx.reshape(shape[0], -1)[r_i, src2[r_i, e_i] - n_old]
        tok[r_i, e_i], val[r_i, e_i] = view.windows(rows[r_i], flat)
    return tok.reshape(*shape, w), val.reshape(*shape, w)


class TopKState:
    """Exact running top-k distinct windows per feature for a chunk of c features."""

    def __init__(self, c: int, config: DashboardConfig, device: torch.device) -> None:
        k, w = config.top_k, config.width
        self.config = config
        self.values = torch.full((c, k), -math.inf, device=device)
        self.gids = torch.full((c, k), _INT64_MAX, dtype=torch.long, device=device)
        self.hashes = torch.zeros((c, k), dtype=torch.long, device=device)
        self.win_tok = torch.full((c, k, w), -1, dtype=torch.long, device=device)
        self.win_val = torch.zeros((c, k, w), device=device)

    @staticmethod
    def _largest(feats_t: Tensor, m: int) -> Tensor:
        """Flat indices [r, m] of each row's m largest values; ties at the cut go to the earliest position."""
        vals, idx = torch.topk(feats_t, m, dim=1)
        threshold = vals[:, -1:]
        # topk picks arbitrarily among equal values at the cut; redo those rows with a stable sort.
        ambiguous = (threshold[:, 0] > 0) & ((feats_t >= threshold).sum(1) > m)
        if ambiguous.any():
            rows = ambiguous.nonzero()[:, 0]
            idx[rows] = torch.sort(feats_t[rows], dim=1, descending=True, stable=True).indices[:, :m]
        return idx

    def _candidates(self, view: _BatchView, rows: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
        """The batch's best k distinct positions per row (flat idx [r, k], kept [r, k]) and rows needing more."""
        feats = view.feats_t[rows]
        idx = self._largest(feats, m)
        vals = torch.gather(feats, 1, idx)
        pick, kept = _top_distinct(vals, view.gid_of[idx], view.hash_of[idx], self.config.top_k)
        # A row may hide more distinct windows beyond the m looked at when all m were positive.
        short = (kept.sum(1) < self.config.top_k) & (vals[:, -1] > 0)
        return torch.gather(idx, 1, pick), kept, short

    def update(self, view: _BatchView) -> None:
        k = self.config.top_k
        c, n = view.feats_t.shape
        m = min(n, 2 * k)
        rows = torch.arange(c, device=view.feats_t.device)
        idx, kept, short = self._candidates(view, rows, m)
        # Duplicated windows inside the batch: look further, only for the rows that need it.
        while m < n and short.any():
            m = min(n, 2 * m)
            rows = rows[short]
            more_idx, more_kept, short = self._candidates(view, rows, m)
            idx[rows], kept[rows] = more_idx, more_kept
        vals = torch.where(kept, torch.gather(view.feats_t, 1, idx), -math.inf)
        all_vals = torch.cat([self.values, vals], 1)
        all_gids = torch.cat([self.gids, view.gid_of[idx]], 1)
        all_hash = torch.cat([self.hashes, view.hash_of[idx]], 1)
        pick, kept = _top_distinct(all_vals, all_gids, all_hash, k)
        self.values = torch.where(kept, torch.gather(all_vals, 1, pick), -math.inf)
        self.gids = torch.gather(all_gids, 1, pick)
        self.hashes = torch.gather(all_hash, 1, pick)

    def take_windows(self, view: _BatchView) -> None:
        """Second pass, once the top k are final: gather the windows of the entries that lie in this batch."""
        seq = self.gids // POS_STRIDE - int(view.gid_of[0]) // POS_STRIDE  # unused slots: huge
        r, j = ((seq >= 0) & (seq < view.gid_of.numel() // view.s)).nonzero(as_tuple=True)
        if r.numel():
            self.win_tok[r, j], self.win_val[r, j] = view.windows(r, seq[r, j] * view.s + self.gids[r, j] % POS_STRIDE)


class SampleState:
    """Quantile-stratified samples: per (feature, bin), the per_bin positions with the smallest priority."""

    def __init__(self, c: int, config: DashboardConfig, device: torch.device) -> None:
        nb, pb, w = config.n_quantile_bins, config.per_bin, config.width
        self.config = config
        self.prio = torch.full((c * nb, pb), _INT64_MAX, dtype=torch.long, device=device)
        self.values = torch.zeros((c * nb, pb), device=device)
        self.gids = torch.full((c * nb, pb), _INT64_MAX, dtype=torch.long, device=device)
        self.win_tok = torch.full((c * nb, pb, w), -1, dtype=torch.long, device=device)
        self.win_val = torch.zeros((c * nb, pb, w), device=device)

    def update(self, view: _BatchView, f_idx: Tensor, p_idx: Tensor, qbin: Tensor, prio: Tensor) -> None:
        """Firing entries only: feature row f_idx, flat position p_idx, quantile bin and priority (all [e])."""
        nb, pb = self.config.n_quantile_bins, self.config.per_bin
        groups = self.prio.shape[0]
        device = prio.device
        group = f_idx * nb + qbin
        # Sort by (group, priority): each group's smallest priorities first.
        order = torch.argsort(prio, stable=True)
        order = order[torch.argsort(group[order], stable=True)]
        g_sorted = group[order]
        rank = torch.arange(g_sorted.numel(), device=device) - torch.searchsorted(g_sorted, g_sorted)
        take = rank < pb
        sel_e, g_sel, r_sel = order[take], g_sorted[take], rank[take]
        cand_key = torch.full((groups, pb), _INT64_MAX, dtype=torch.long, device=device)
        cand_idx = torch.zeros((groups, pb), dtype=torch.long, device=device)
        cand_key[g_sel, r_sel] = prio[sel_e]
        cand_idx[g_sel, r_sel] = p_idx[sel_e]
        all_key = torch.cat([self.prio, cand_key], 1)
        pick = torch.topk(all_key, pb, dim=1, largest=False).indices  # keys are distinct: a bijective hash
        rows = torch.arange(groups, device=device) // nb
        cand_val = view.feats_t[rows[:, None], cand_idx]
        self.prio = torch.gather(all_key, 1, pick)
        self.values = torch.gather(torch.cat([self.values, cand_val], 1), 1, pick)
        self.gids = torch.gather(torch.cat([self.gids, view.gid_of[cand_idx]], 1), 1, pick)
        self.win_tok, self.win_val = _take_windows(self.win_tok, self.win_val, pick, pb, cand_idx, view, rows)


# ----------------------------------------------------------------------------- the passes


def _masked_feats(batch: BatchLike, encode: Callable[[Tensor], Tensor], lo: int, hi: int, device) -> Tensor:
    """[b, s, hi - lo] feature activations with masked positions zeroed."""
    acts = batch.acts.to(device)
    b, s, d_in = acts.shape
    feats = encode(acts.reshape(b * s, d_in))[:, lo:hi].float().reshape(b, s, hi - lo)
    return feats * batch.mask.to(device)[..., None]


def _gid_of(batch: BatchLike, seq0: int, device) -> Tensor:
    b, s = batch.tokens.shape
    seq = torch.arange(b, device=device)[:, None] + seq0
    return (seq * POS_STRIDE + torch.arange(s, device=device)[None, :]).reshape(-1)


def _views(batches, encode, lo: int, hi: int, config: DashboardConfig, weights: Tensor, device) -> Iterator[_BatchView]:
    seq0 = 0
    for batch in batches():
        feats = _masked_feats(batch, encode, lo, hi, device)  # [b, s, c]
        gid_of = _gid_of(batch, seq0, device)
        seq0 += batch.tokens.shape[0]
        yield _BatchView(batch.tokens.to(device), feats, gid_of, config, weights), int(batch.mask.sum())


def compute_dashboards(
    *,
    batches: Callable[[], Iterable[BatchLike]],
    encode: Callable[[Tensor], Tensor],
    d_sae: int,
    config: DashboardConfig | None = None,
    feature_chunk: int = 16384,
    device: str | torch.device = "cpu",
    progress: Callable[[float, str], None] | None = None,
) -> Iterator[DashboardChunk]:
    """Yield, per chunk of features, its dashboards (`DashboardChunk`; `.features()` gives one dict each).

    `batches()` must iterate the same activation batches in the same order each time it is called
    (two passes per chunk); `encode` maps acts [n, d_in] -> feature activations [n, d_sae].
    """
    config = config or DashboardConfig()
    device = torch.device(device)
    weights = torch.randint(1, 2**62, (config.width,), generator=torch.Generator().manual_seed(1234)).to(device)
    chunks = [(lo, min(d_sae, lo + feature_chunk)) for lo in range(0, d_sae, feature_chunk)]
    with torch.no_grad():
        for ci, (lo, hi) in enumerate(chunks):
            c = hi - lo
            top = TopKState(c, config, device)
            n_firing = torch.zeros(c, dtype=torch.long, device=device)
            sums = torch.zeros(c, dtype=torch.float64, device=device)
            log_hist = torch.zeros(c * N_LOG_BINS, dtype=torch.long, device=device)
            n_tokens = 0
            for view, n_kept in _views(batches, encode, lo, hi, config, weights, device):
                n_tokens += n_kept
                f_idx, p_idx = (view.feats_t > 0).nonzero(as_tuple=True)
                v = view.feats_t[f_idx, p_idx]
                n_firing += torch.bincount(f_idx, minlength=c)
                sums.index_add_(0, f_idx, v.double())
                log_hist += torch.bincount(f_idx * N_LOG_BINS + log_bin_index(v), minlength=c * N_LOG_BINS)
                top.update(view)
            if progress:
                progress((ci + 0.5) / len(chunks), f"features {lo}-{hi - 1}: top activations done")

            log_hist = log_hist.reshape(c, N_LOG_BINS)
            lookup = quantile_lookup(log_hist, config.n_quantile_bins)  # [c, N_LOG_BINS]
            max_val = top.values[:, 0].clamp_min(0.0)  # [c]
            lin_hist = torch.zeros(c * config.hist_bins, dtype=torch.long, device=device)
            bin_counts = torch.zeros(c * config.n_quantile_bins, dtype=torch.long, device=device)
            samples = SampleState(c, config, device)
            for view, _ in _views(batches, encode, lo, hi, config, weights, device):
                f_idx, p_idx = (view.feats_t > 0).nonzero(as_tuple=True)
                v = view.feats_t[f_idx, p_idx]
                hb = torch.ceil(v / max_val[f_idx] * config.hist_bins).long().clamp(1, config.hist_bins) - 1
                lin_hist += torch.bincount(f_idx * config.hist_bins + hb, minlength=c * config.hist_bins)
                qbin = lookup[f_idx, log_bin_index(v)]
                bin_counts += torch.bincount(
                    f_idx * config.n_quantile_bins + qbin, minlength=c * config.n_quantile_bins
                )
                prio = sample_priority(view.gid_of[p_idx], f_idx + lo, d_sae, config.seed)
                samples.update(view, f_idx, p_idx, qbin, prio)
                top.take_windows(view)
            if progress:
                progress((ci + 1) / len(chunks), f"features {lo}-{hi - 1}: samples done")
            yield _finalise(
                lo=lo,
                config=config,
                n_tokens=n_tokens,
                n_firing=n_firing,
                sums=sums,
                top=top,
                samples=samples,
                lin_hist=lin_hist.reshape(c, config.hist_bins),
                bin_counts=bin_counts.reshape(c, config.n_quantile_bins),
                lookup=lookup,
                log_hist=log_hist,
            )


@dataclass
class DashboardChunk:
    """The dashboards of a chunk of features as arrays (numpy), examples flattened in stored order.

    Per feature (arrays [c]): firing count, mean and max activation, linear histogram [c, hist_bins], and per
    quantile bin [c, n_quantile_bins] its count and value range. Examples ([e], sorted by feature): the top
    ones (bin -1, by value descending) then each quantile bin's samples (by value descending); each with its
    value, corpus position (seq, pos), the index of its peak in its window (center) and its window's length.
    `tokens` and `values` [sum of lengths] hold every example's window, trimmed to real tokens, one after
    another. `features()` gives the same as one dict per feature.
    """

    lo: int
    n_tokens: int
    n_firing: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    histogram: np.ndarray
    bin_count: np.ndarray
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    ex_feature: np.ndarray
    ex_bin: np.ndarray
    ex_value: np.ndarray
    ex_seq: np.ndarray
    ex_pos: np.ndarray
    ex_center: np.ndarray
    ex_len: np.ndarray
    tokens: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.n_firing.shape[0])

    @classmethod
    def from_features(cls, features: list[dict[str, Any]]) -> DashboardChunk:
        """The chunk of consecutive features given as dicts (the form `features()` returns)."""
        nb = max([len(f["quantiles"]) for f in features] + [1])
        examples = [
            (i, j, ex)
            for i, f in enumerate(features)
            for j, group in [(-1, f["top"])] + [(j, q["examples"]) for j, q in enumerate(f["quantiles"])]
            for ex in group
        ]

        n_bins = max(len(f["histogram"]["counts"]) for f in features)
        histogram = np.zeros((len(features), n_bins), dtype=np.int64)
        for i, f in enumerate(features):
            histogram[i, : len(f["histogram"]["counts"])] = f["histogram"]["counts"]  # a dead feature's is empty

        def per_feature(get, dtype) -> np.ndarray:
            return np.array([get(f) for f in features], dtype=dtype)

        def per_bin(key: str, dtype) -> np.ndarray:
            out = np.zeros((len(features), nb), dtype=dtype)
            for i, f in enumerate(features):
                out[i, : len(f["quantiles"])] = [q[key] for q in f["quantiles"]]
            return out

        def per_example(key: str, dtype) -> np.ndarray:
            return np.array([ex[key] for _, _, ex in examples], dtype=dtype)

        def windows(key: str, dtype) -> np.ndarray:
            return np.concatenate([np.asarray(ex[key], dtype=dtype) for _, _, ex in examples] or [np.zeros(0, dtype)])

        return cls(
            lo=features[0]["index"],
            n_tokens=features[0]["n_tokens"],
            n_firing=per_feature(lambda f: f["n_firing"], np.int64),
            mean=per_feature(lambda f: f["mean"], np.float64),
            max=per_feature(lambda f: f["max"], np.float64),
            histogram=histogram,
            bin_count=per_bin("count", np.int64),
            bin_lo=per_bin("lo", np.float64),
            bin_hi=per_bin("hi", np.float64),
            ex_feature=np.array([i for i, _, _ in examples], dtype=np.int64),
            ex_bin=np.array([j for _, j, _ in examples], dtype=np.int64),
            ex_value=per_example("value", np.float32),
            ex_seq=per_example("seq", np.int64),
            ex_pos=per_example("pos", np.int64),
            ex_center=per_example("center", np.int64),
            ex_len=np.array([len(ex["tokens"]) for _, _, ex in examples], dtype=np.int64),
            tokens=windows("tokens", np.int64),
            values=windows("values", np.float32),
        )

    @property
    def frequency(self) -> np.ndarray:
        """[c] fraction of the chunk's scored tokens each feature fired on."""
        return self.n_firing / self.n_tokens if self.n_tokens else np.zeros(len(self))

    def histogram_of(self, i: int) -> dict[str, Any]:
        """Feature i's linear activation histogram, from 0 to its max (no counts for a dead feature)."""
        return {"lo": 0.0, "hi": float(self.max[i]), "counts": self.histogram[i].tolist() if self.n_firing[i] else []}

    def example_offsets(self) -> np.ndarray:
        """[c + 1]: feature i's examples are ex_*[off[i]:off[i + 1]]."""
        return np.searchsorted(self.ex_feature, np.arange(len(self) + 1))

    def token_offsets(self) -> np.ndarray:
        """[e + 1]: example j's window is tokens[off[j]:off[j + 1]]."""
        return np.concatenate([[0], np.cumsum(self.ex_len)])

    def features(self) -> list[dict[str, Any]]:
        """One dict per feature: counts, histogram, top examples and quantile bins with their samples.

        Example windows are numpy arrays (tokens int64, values float32), trimmed to the real tokens.
        """
        ex_off, tok_off = self.example_offsets(), self.token_offsets()

        def example(e: int) -> dict[str, Any]:
            a, b = tok_off[e], tok_off[e + 1]
            return {
                "tokens": self.tokens[a:b],
                "values": self.values[a:b],
                "center": int(self.ex_center[e]),
                "value": float(self.ex_value[e]),
                "seq": int(self.ex_seq[e]),
                "pos": int(self.ex_pos[e]),
            }

        out, frequency = [], self.frequency
        for i in range(len(self)):
            bins = self.ex_bin[ex_off[i] : ex_off[i + 1]]
            examples = [example(e) for e in range(ex_off[i], ex_off[i + 1])]
            quantiles = [
                {
                    "lo": float(self.bin_lo[i, j]),
                    "hi": float(self.bin_hi[i, j]),
                    "count": int(self.bin_count[i, j]),
                    "examples": [ex for ex, q in zip(examples, bins, strict=True) if q == j],
                }
                for j in np.flatnonzero(self.bin_count[i])
            ]
            out.append(
                {
                    "index": self.lo + i,
                    "n_tokens": self.n_tokens,
                    "n_firing": int(self.n_firing[i]),
                    "frequency": float(frequency[i]),
                    "max": float(self.max[i]),
                    "mean": float(self.mean[i]),
                    "histogram": self.histogram_of(i),
                    "top": [ex for ex, q in zip(examples, bins, strict=True) if q < 0],
                    "quantiles": quantiles,
                }
            )
        return out


def _bin_ranges(log_hist: np.ndarray, lookup: np.ndarray, max_value: np.ndarray, nb: int) -> tuple[np.ndarray, ...]:
    """[c, nb] value range of each quantile bin: from the first to the end of the last occupied fine log bin
    mapped to it (capped at the feature's max); (0, max) where none is."""
    c = log_hist.shape[0]
    edges = log_bin_edges().numpy()
    fi, fb = np.nonzero(log_hist > 0)  # row by row, fine bins ascending; a row's lookup never decreases
    key = fi * nb + lookup[fi, fb]
    keys, first = np.unique(key, return_index=True)
    last = np.append(first[1:], key.size) - 1
    lo = np.zeros(c * nb)
    hi = np.repeat(max_value, nb)
    lo[keys] = edges[fb[first]]
    hi[keys] = np.minimum(edges[fb[last] + 1], max_value[keys // nb])
    return lo.reshape(c, nb), hi.reshape(c, nb)


def _finalise(
    *,
    lo: int,
    config: DashboardConfig,
    n_tokens: int,
    n_firing: Tensor,
    sums: Tensor,
    top: TopKState,
    samples: SampleState,
    lin_hist: Tensor,
    bin_counts: Tensor,
    lookup: Tensor,
    log_hist: Tensor,
) -> DashboardChunk:
    """The chunk's states as a `DashboardChunk`: real examples only, in stored order, windows trimmed."""
    nb, pb, k = config.n_quantile_bins, config.per_bin, config.top_k
    c = n_firing.shape[0]
    fires = n_firing.cpu().numpy()
    t_val = top.values.cpu().numpy()
    max_value = np.where(fires > 0, np.maximum(t_val[:, 0], 0.0), 0.0).astype(np.float64)
    # Samples inside a bin by value descending (stable: ties keep priority order), real ones first.
    s_real = (samples.prio != _INT64_MAX).reshape(c, nb, pb)
    s_val = samples.values.reshape(c, nb, pb)
    order = torch.argsort(torch.where(s_real, -s_val, math.inf), dim=2, stable=True)
    s_real, s_val = torch.gather(s_real, 2, order), torch.gather(s_val, 2, order)
    s_gid = torch.gather(samples.gids.reshape(c, nb, pb), 2, order)
    w = config.width
    # Selected examples: (feature, slot) with slots 0..k-1 the top ones and k.. the samples, bin by bin.
    t_f, t_e = (top.values > 0).nonzero(as_tuple=True)
    s_f, s_e = s_real.reshape(c, nb * pb).nonzero(as_tuple=True)
    s_group = s_f * nb + s_e // pb
    s_slot = order.reshape(c * nb, pb)[s_group, s_e % pb]  # where the sample sits in the state
    slot = torch.cat([t_e, k + s_e])
    feature = torch.cat([t_f, s_f])
    perm = torch.argsort(feature * (k + nb * pb) + slot)
    win_tok = torch.cat([top.win_tok[t_f, t_e], samples.win_tok.reshape(c * nb, pb, w)[s_group, s_slot]])[perm]
    win_val = torch.cat([top.win_val[t_f, t_e], samples.win_val.reshape(c * nb, pb, w)[s_group, s_slot]])[perm]
    value = torch.cat([top.values[t_f, t_e], s_val.reshape(c, -1)[s_f, s_e]])[perm]
    gid = torch.cat([top.gids[t_f, t_e], s_gid.reshape(c, -1)[s_f, s_e]])[perm]
    ex_bin = torch.cat([torch.full_like(t_e, -1), s_e // pb])[perm]
    valid = (win_tok >= 0).cpu().numpy()  # padding (-1) only at a window's ends
    win_tok, win_val, gid = win_tok.cpu().numpy(), win_val.cpu().numpy(), gid.cpu().numpy()
    start = valid.argmax(1) if valid.size else np.zeros(0, dtype=np.int64)
    log_hist_np = log_hist.cpu().numpy()
    bin_lo, bin_hi = _bin_ranges(log_hist_np, lookup.cpu().numpy(), max_value, nb)
    fires_f = np.maximum(fires, 1)
    return DashboardChunk(
        lo=lo,
        n_tokens=n_tokens,
        n_firing=fires,
        mean=np.where(fires > 0, sums.cpu().numpy() / fires_f, 0.0),
        max=max_value,
        histogram=lin_hist.cpu().numpy(),
        bin_count=bin_counts.cpu().numpy(),
        bin_lo=bin_lo,
        bin_hi=bin_hi,
        ex_feature=feature[perm].cpu().numpy(),
        ex_bin=ex_bin.cpu().numpy(),
        ex_value=value.cpu().numpy(),
        ex_seq=gid // POS_STRIDE,
        ex_pos=gid % POS_STRIDE,
        ex_center=config.ctx_before - start,
        ex_len=valid.sum(1),
        tokens=win_tok[valid],
        values=win_val[valid],
    )


# ----------------------------------------------------------------------------- logits and caching


def output_logit_tokens(*, w_dec: Tensor, unembed: Tensor, k: int = 10, chunk: int = 4096) -> tuple[Tensor, ...]:
    """Top-k positive and negative output logits of each decoder direction: W_dec [d_sae, d_in] @ W_U [d_in, vocab].

    Returns (pos_values, pos_ids, neg_values, neg_ids), each [d_sae, k]; chunked over features.
    """
    pos_v, pos_i, neg_v, neg_i = [], [], [], []
    with torch.no_grad():
        w_u = unembed.float()
        for lo in range(0, w_dec.shape[0], chunk):
            logits = w_dec[lo : lo + chunk].float().to(w_u.device) @ w_u  # [chunk, vocab]
            top = torch.topk(logits, k, dim=1)
            bottom = torch.topk(logits, k, dim=1, largest=False)
            pos_v.append(top.values.cpu())
            pos_i.append(top.indices.cpu())
            neg_v.append(bottom.values.cpu())
            neg_i.append(bottom.indices.cpu())
    return torch.cat(pos_v), torch.cat(pos_i), torch.cat(neg_v), torch.cat(neg_i)


class ActivationCache:
    """Activation batches written once to local disk and read back any number of times.

    Lets the model run once while wide SAEs are processed in several chunks of features,
    each with two passes; disk use grows with the corpus, memory does not.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="dashacts-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.n_batches = 0

    def write(self, batches: Iterable[BatchLike]) -> int:
        """Store each batch (on CPU); returns the number of unmasked tokens written."""
        n_tokens = 0
        for batch in batches:
            record = {"tokens": batch.tokens.cpu(), "acts": batch.acts.detach().cpu(), "mask": batch.mask.cpu()}
            torch.save(record, self.directory / f"{self.n_batches:08d}.pt")
            self.n_batches += 1
            n_tokens += int(batch.mask.sum())
        return n_tokens

    def __call__(self) -> Iterator[ActivationBatch]:
        for i in range(self.n_batches):
            record = torch.load(self.directory / f"{i:08d}.pt")
            yield ActivationBatch(record["tokens"], record["acts"], record["mask"])

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
