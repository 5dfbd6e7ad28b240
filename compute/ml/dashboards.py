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
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

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


@dataclass(frozen=True)
class DashboardConfig:
    top_k: int = 20
    ctx_before: int = 24
    ctx_after: int = 8
    n_quantile_bins: int = 10
    per_bin: int = 5
    hist_bins: int = 30
    n_logit_tokens: int = 10
    seed: int = 0

    @property
    def width(self) -> int:
        return self.ctx_before + 1 + self.ctx_after

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Batch(NamedTuple):
    tokens: Tensor
    acts: Tensor
    mask: Tensor


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


class _Windows:
    """Gathers context windows (tokens and one feature's activations) from one batch."""

    def __init__(self, tokens: Tensor, feats: Tensor, config: DashboardConfig) -> None:
        self.s = tokens.shape[1]
        pad = (config.ctx_before, config.ctx_after)
        self.tokens = torch.nn.functional.pad(tokens, pad, value=-1)  # [b, s + w - 1]
        self.feats = torch.nn.functional.pad(feats.permute(0, 2, 1), pad, value=0.0)  # [b, c, s + w - 1]
        self.offsets = torch.arange(config.width, device=tokens.device)

    def gather(self, flat_idx: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """flat_idx [r, m] batch positions of features `rows` [r] (default all) -> tokens, values [r, m, w]."""
        if rows is None:
            rows = torch.arange(flat_idx.shape[0], device=flat_idx.device)
        seqs, pos = flat_idx // self.s, flat_idx % self.s
        cols = pos[..., None] + self.offsets  # [r, m, w] in padded coordinates
        win_tok = self.tokens[seqs[..., None], cols]
        win_val = self.feats[seqs[..., None], rows[:, None, None], cols]
        return win_tok, win_val


def _first_occurrence(hashes: Tensor) -> Tensor:
    """[r, M] -> bool [r, M]: True where no earlier entry in the row has the same hash."""
    by_hash = torch.argsort(hashes, dim=1, stable=True)
    h = torch.gather(hashes, 1, by_hash)
    first_sorted = torch.ones_like(h, dtype=torch.bool)
    first_sorted[:, 1:] = h[:, 1:] != h[:, :-1]
    return torch.empty_like(first_sorted).scatter_(1, by_hash, first_sorted)


@dataclass
class _Entries:
    """Per-feature lists of examples: values, gids, hashes [r, M]; windows [r, M, w]."""

    values: Tensor
    gids: Tensor
    hashes: Tensor
    win_tok: Tensor
    win_val: Tensor

    def take(self, idx: Tensor) -> _Entries:
        w = self.win_tok.shape[-1]
        idx_w = idx[..., None].expand(-1, -1, w)
        return _Entries(
            torch.gather(self.values, 1, idx),
            torch.gather(self.gids, 1, idx),
            torch.gather(self.hashes, 1, idx),
            torch.gather(self.win_tok, 1, idx_w),
            torch.gather(self.win_val, 1, idx_w),
        )

    def cat(self, other: _Entries) -> _Entries:
        return _Entries(*(torch.cat([a, b], 1) for a, b in zip(self.fields(), other.fields(), strict=True)))

    def fields(self) -> tuple[Tensor, ...]:
        return (self.values, self.gids, self.hashes, self.win_tok, self.win_val)

    def top_distinct(self, k: int) -> tuple[_Entries, Tensor]:
        """The k best entries per row by (value desc, gid asc), positive values only, one per window text.

        Returns them ([r, k], empty slots have value -inf) and the number of real ones per row.
        """
        ranked = self.take(_stable_order(self.values, self.gids))
        # Non-positive entries sort after every positive one, so they never hide a positive duplicate.
        keep = (ranked.values > 0) & _first_occurrence(ranked.hashes)
        pick = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k]
        best = ranked.take(pick)
        kept = torch.gather(keep, 1, pick)
        best.values = torch.where(kept, best.values, -math.inf)
        return best, kept.sum(1)


class TopKState:
    """Exact running top-k distinct windows per feature for a chunk of c features."""

    def __init__(self, c: int, config: DashboardConfig, device: torch.device) -> None:
        k, w = config.top_k, config.width
        self.config = config
        self.entries = _Entries(
            torch.full((c, k), -math.inf, device=device),
            torch.full((c, k), _INT64_MAX, dtype=torch.long, device=device),
            torch.zeros((c, k), dtype=torch.long, device=device),
            torch.full((c, k, w), -1, dtype=torch.long, device=device),
            torch.zeros((c, k, w), device=device),
        )
        generator = torch.Generator().manual_seed(1234)
        self.weights = torch.randint(1, 2**62, (w,), generator=generator).to(device)

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

    def _candidates(self, feats_t: Tensor, gid_of: Tensor, windows: _Windows, rows: Tensor, m: int):
        idx = self._largest(feats_t[rows], m)
        win_tok, win_val = windows.gather(idx, rows)
        found = _Entries(
            torch.gather(feats_t[rows], 1, idx), gid_of[idx], _window_hash(win_tok, self.weights), win_tok, win_val
        )
        best, n_kept = found.top_distinct(self.config.top_k)
        # A row may hide more distinct windows beyond the m looked at if all m were positive.
        short = (n_kept < self.config.top_k) & (found.values[:, -1] > 0)
        return best, short

    def update(self, feats_t: Tensor, gid_of: Tensor, windows: _Windows) -> None:
        """feats_t [c, n] masked activations; gid_of [n] corpus position of each flat index."""
        k = self.config.top_k
        n = feats_t.shape[1]
        m = min(n, 2 * k)
        rows = torch.arange(feats_t.shape[0], device=feats_t.device)
        batch_best, short = self._candidates(feats_t, gid_of, windows, rows, m)
        # Duplicated windows inside the batch: look further, only for the rows that need it.
        while m < n and short.any():
            m = min(n, 2 * m)
            rows = rows[short]
            more, short = self._candidates(feats_t, gid_of, windows, rows, m)
            for mine, theirs in zip(batch_best.fields(), more.fields(), strict=True):
                mine[rows] = theirs
        self.entries, _ = self.entries.cat(batch_best).top_distinct(k)

    @property
    def values(self) -> Tensor:
        return self.entries.values


class SampleState:
    """Quantile-stratified samples: per (feature, bin), the per_bin positions with smallest priority."""

    def __init__(self, c: int, config: DashboardConfig, device: torch.device) -> None:
        nb, pb, w = config.n_quantile_bins, config.per_bin, config.width
        self.config = config
        self.prio = torch.full((c, nb, pb), _INT64_MAX, dtype=torch.long, device=device)
        self.values = torch.zeros((c, nb, pb), device=device)
        self.gids = torch.full((c, nb, pb), _INT64_MAX, dtype=torch.long, device=device)
        self.win_tok = torch.full((c, nb, pb, w), -1, dtype=torch.long, device=device)
        self.win_val = torch.zeros((c, nb, pb, w), device=device)

    def update(self, feats_t: Tensor, qbin: Tensor, prio: Tensor, gid_of: Tensor, windows: _Windows) -> None:
        """feats_t, qbin, prio: [c, n]; qbin is -1 where the feature does not fire."""
        pb = self.config.per_bin
        m = min(pb, feats_t.shape[1])
        w = self.win_tok.shape[-1]
        for j in range(self.config.n_quantile_bins):
            key = torch.where(qbin == j, prio, _INT64_MAX)
            cand_key, idx = torch.topk(key, m, dim=1, largest=False)  # [c, m]
            win_tok, win_val = windows.gather(idx)
            all_key = torch.cat([self.prio[:, j], cand_key], 1)
            sel = torch.topk(all_key, pb, dim=1, largest=False).indices  # keys are distinct (bijective hash)
            self.prio[:, j] = torch.gather(all_key, 1, sel)
            self.values[:, j] = torch.gather(torch.cat([self.values[:, j], torch.gather(feats_t, 1, idx)], 1), 1, sel)
            self.gids[:, j] = torch.gather(torch.cat([self.gids[:, j], gid_of[idx]], 1), 1, sel)
            sel_w = sel[..., None].expand(-1, -1, w)
            self.win_tok[:, j] = torch.gather(torch.cat([self.win_tok[:, j], win_tok], 1), 1, sel_w)
            self.win_val[:, j] = torch.gather(torch.cat([self.win_val[:, j], win_val], 1), 1, sel_w)


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
    chunks = [(lo, min(d_sae, lo + feature_chunk)) for lo in range(0, d_sae, feature_chunk)]
    with torch.no_grad():
        for ci, (lo, hi) in enumerate(chunks):
            c = hi - lo
            top = TopKState(c, config, device)
            n_firing = torch.zeros(c, dtype=torch.long, device=device)
            sums = torch.zeros(c, dtype=torch.float64, device=device)
            log_hist = torch.zeros(c * N_LOG_BINS, dtype=torch.long, device=device)
            n_tokens = 0
            seq0 = 0
            for batch in batches():
                feats = _masked_feats(batch, encode, lo, hi, device)  # [b, s, c]
                gid_of = _gid_of(batch, seq0, device)
                seq0 += batch.tokens.shape[0]
                n_tokens += int(batch.mask.sum())
                feats_t = feats.reshape(-1, c).T  # [c, n]
                firing = feats_t > 0
                n_firing += firing.sum(1)
                sums += feats_t.sum(1, dtype=torch.float64)
                f_idx, p_idx = firing.nonzero(as_tuple=True)
                log_hist += torch.bincount(
                    f_idx * N_LOG_BINS + log_bin_index(feats_t[f_idx, p_idx]), minlength=c * N_LOG_BINS
                )
                top.update(feats_t, gid_of, _Windows(batch.tokens.to(device), feats, config))
            if progress:
                progress((ci + 0.5) / len(chunks), f"features {lo}-{hi - 1}: top activations done")

            log_hist = log_hist.reshape(c, N_LOG_BINS)
            lookup = quantile_lookup(log_hist, config.n_quantile_bins)  # [c, N_LOG_BINS]
            max_val = top.values[:, 0].clamp_min(0.0)  # [c]
            lin_hist = torch.zeros(c * config.hist_bins, dtype=torch.long, device=device)
            bin_counts = torch.zeros(c * config.n_quantile_bins, dtype=torch.long, device=device)
            samples = SampleState(c, config, device)
            features = torch.arange(lo, hi, device=device)
            seq0 = 0
            for batch in batches():
                feats = _masked_feats(batch, encode, lo, hi, device)
                gid_of = _gid_of(batch, seq0, device)
                seq0 += batch.tokens.shape[0]
                feats_t = feats.reshape(-1, c).T
                firing = feats_t > 0
                f_idx, p_idx = firing.nonzero(as_tuple=True)
                v = feats_t[f_idx, p_idx]
                hb = torch.ceil(v / max_val[f_idx] * config.hist_bins).long().clamp(1, config.hist_bins) - 1
                lin_hist += torch.bincount(f_idx * config.hist_bins + hb, minlength=c * config.hist_bins)
                qb_fire = lookup[f_idx, log_bin_index(v)]
                bin_counts += torch.bincount(
                    f_idx * config.n_quantile_bins + qb_fire, minlength=c * config.n_quantile_bins
                )
                qbin = torch.full_like(feats_t, -1, dtype=torch.long)
                qbin[f_idx, p_idx] = qb_fire
                prio = sample_priority(gid_of[None, :], features[:, None], d_sae, config.seed)
                samples.update(feats_t, qbin, prio, gid_of, _Windows(batch.tokens.to(device), feats, config))
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


def _example(tokens: list[int], values: list[float], value: float, gid: int, config: DashboardConfig) -> dict:
    """Trim the window's padding; `center` is the index of the max token inside `tokens`."""
    start = next((i for i, t in enumerate(tokens) if t >= 0), 0)
    end = len(tokens) - next((i for i, t in enumerate(reversed(tokens)) if t >= 0), 0)
    return {
        "tokens": tokens[start:end],
        "values": values[start:end],
        "center": config.ctx_before - start,
        "value": value,
        "seq": gid // POS_STRIDE,
        "pos": gid % POS_STRIDE,
    }


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
    edges = log_bin_edges()
    c = n_firing.shape[0]
    top_vals, top_gids = top.values.cpu().tolist(), top.entries.gids.cpu().tolist()
    top_tok, top_val = top.entries.win_tok.cpu().tolist(), top.entries.win_val.cpu().tolist()
    s_prio, s_vals, s_gids = samples.prio.cpu().tolist(), samples.values.cpu().tolist(), samples.gids.cpu().tolist()
    s_tok, s_val = samples.win_tok.cpu().tolist(), samples.win_val.cpu().tolist()
    n_firing_l, sums_l = n_firing.cpu().tolist(), sums.cpu().tolist()
    lin_l, bins_l = lin_hist.cpu().tolist(), bin_counts.cpu().tolist()
    # Range of each quantile bin: the lowest and highest fine log bins mapped to it that hold values.
    occupied = (log_hist > 0).cpu()
    lookup = lookup.cpu()
    out: list[dict[str, Any]] = []
    for i in range(c):
        fires = n_firing_l[i]
        max_value = max(top_vals[i][0], 0.0) if fires else 0.0
        top_examples = [
            _example(top_tok[i][j], top_val[i][j], top_vals[i][j], top_gids[i][j], config)
            for j in range(config.top_k)
            if top_vals[i][j] > 0
        ]
        quantiles = []
        if fires:
            fine = occupied[i].nonzero()[:, 0]
            fine_q = lookup[i, fine].tolist()
            fine_l = fine.tolist()
            for j in range(config.n_quantile_bins):
                if not bins_l[i][j]:
                    continue
                members = [f for f, q in zip(fine_l, fine_q, strict=True) if q == j]
                examples = [
                    _example(s_tok[i][j][e], s_val[i][j][e], s_vals[i][j][e], s_gids[i][j][e], config)
                    for e in range(config.per_bin)
                    if s_prio[i][j][e] != _INT64_MAX
                ]
                examples.sort(key=lambda ex: -ex["value"])
                quantiles.append(
                    {
                        "lo": float(edges[members[0]]) if members else 0.0,
                        "hi": min(float(edges[members[-1] + 1]), max_value) if members else max_value,
                        "count": bins_l[i][j],
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
                "histogram": {"lo": 0.0, "hi": max_value, "counts": lin_l[i] if fires else []},
                "top": top_examples,
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

    def __call__(self) -> Iterator[_Batch]:
        for i in range(self.n_batches):
            record = torch.load(self.directory / f"{i:08d}.pt")
            yield _Batch(record["tokens"], record["acts"], record["mask"])

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
