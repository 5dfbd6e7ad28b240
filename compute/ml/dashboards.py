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
        self.before = config.ctx_before
        self.feats_t = feats.reshape(b * s, -1).T  # [c, n]
        self.gid_of = gid_of  # [n]
        self.tokens = torch.nn.functional.pad(tokens, (config.ctx_before, config.ctx_after), value=-1)
        self.offsets = torch.arange(config.width, device=tokens.device)
        # The hash of the window around every position: duplicates are found without gathering windows.
        self.hash_of = _window_hash(self.tokens.unfold(1, config.width, 1), weights).reshape(-1)  # [n]

    def windows(self, features: Tensor, flat_idx: Tensor) -> tuple[Tensor, Tensor]:
        """Pairs (feature row [e], flat position [e]) -> window tokens [e, w] (-1 outside) and values [e, w]."""
        seqs, pos = flat_idx // self.s, flat_idx % self.s
        cols = pos[:, None] + self.offsets  # [e, w] in padded coordinates
        orig = cols - self.before
        inside = (orig >= 0) & (orig < self.s)
        flat = seqs[:, None] * self.s + orig.clamp(0, self.s - 1)
        return self.tokens[seqs[:, None], cols], self.feats_t[features[:, None], flat] * inside


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
        all_rows = torch.arange(c, device=idx.device)
        self.win_tok, self.win_val = _take_windows(self.win_tok, self.win_val, pick, k, idx, view, all_rows)


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
) -> Iterator[list[dict[str, Any]]]:
    """Yield, per chunk of features, one dashboard dict per feature (see `_finalise`).

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


def _trim(win_tok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of the real tokens in each window [..., w] (padding, -1, only at the ends)."""
    valid = win_tok >= 0
    w = win_tok.shape[-1]
    start = np.where(valid.any(-1), valid.argmax(-1), 0)
    end = np.where(valid.any(-1), w - valid[..., ::-1].argmax(-1), 0)
    return start, end


def _examples(tok, val, value, gid, start, end, before: int, real) -> list[dict[str, Any]]:
    """Example dicts from the arrays of one feature ([e, w] windows, [e] the rest), real entries only."""
    return [
        {
            "tokens": tok[e, start[e] : end[e]],
            "values": val[e, start[e] : end[e]],
            "center": before - int(start[e]),
            "value": float(value[e]),
            "seq": int(gid[e]) // POS_STRIDE,
            "pos": int(gid[e]) % POS_STRIDE,
        }
        for e in np.flatnonzero(real)
    ]


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
) -> list[dict[str, Any]]:
    """Per feature: counts, histogram, top examples and quantile bins with their samples.

    Example windows are numpy arrays (tokens int64, values float32), trimmed to the real tokens.
    """
    nb, pb, before = config.n_quantile_bins, config.per_bin, config.ctx_before
    edges = log_bin_edges().numpy()
    c = n_firing.shape[0]
    t_val, t_gid = top.values.cpu().numpy(), top.gids.cpu().numpy()
    t_tok, t_win = top.win_tok.cpu().numpy(), top.win_val.cpu().numpy()
    t_start, t_end = _trim(t_tok)
    s_real = (samples.prio != _INT64_MAX).cpu().numpy().reshape(c, nb, pb)
    s_val, s_gid = samples.values.cpu().numpy().reshape(c, nb, pb), samples.gids.cpu().numpy().reshape(c, nb, pb)
    s_tok = samples.win_tok.cpu().numpy().reshape(c, nb, pb, -1)
    s_win = samples.win_val.cpu().numpy().reshape(c, nb, pb, -1)
    s_start, s_end = _trim(s_tok)
    fires_l, sums_l = n_firing.cpu().tolist(), sums.cpu().tolist()
    lin_np, bins_np = lin_hist.cpu().numpy(), bin_counts.cpu().numpy()
    # Each quantile bin spans the fine log bins mapped to it that hold values.
    occupied, lookup_np = (log_hist > 0).cpu().numpy(), lookup.cpu().numpy()
    out: list[dict[str, Any]] = []
    for i in range(c):
        fires = fires_l[i]
        max_value = max(float(t_val[i, 0]), 0.0) if fires else 0.0
        quantiles = []
        if fires:
            fine = np.flatnonzero(occupied[i])
            fine_q = lookup_np[i, fine]
            for j in np.flatnonzero(bins_np[i]):
                members = fine[fine_q == j]
                examples = _examples(
                    s_tok[i, j], s_win[i, j], s_val[i, j], s_gid[i, j], s_start[i, j], s_end[i, j], before, s_real[i, j]
                )
                examples.sort(key=lambda ex: -ex["value"])
                quantiles.append(
                    {
                        "lo": float(edges[members[0]]) if members.size else 0.0,
                        "hi": min(float(edges[members[-1] + 1]), max_value) if members.size else max_value,
                        "count": int(bins_np[i, j]),
                        "examples": examples,
                    }
                )
        out.append(
            {
                "index": lo + i,
                "n_tokens": n_tokens,
                "n_firing": fires,
                "frequency": fires / n_tokens if n_tokens else 0.0,
                "max": max_value,
                "mean": sums_l[i] / fires if fires else 0.0,
                "histogram": {"lo": 0.0, "hi": max_value, "counts": lin_np[i].tolist() if fires else []},
                "top": _examples(t_tok[i], t_win[i], t_val[i], t_gid[i], t_start[i], t_end[i], before, t_val[i] > 0),
                "quantiles": quantiles,
            }
        )
    return out


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
