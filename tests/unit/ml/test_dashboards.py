"""Streamed dashboards against brute force over the full activation matrix."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch

from compute.ml.dashboards import (
    POS_STRIDE,
    ActivationCache,
    DashboardConfig,
    compute_dashboards,
    log_bin_index,
    output_logit_tokens,
    quantile_lookup,
    sample_priority,
)

BOS = 0


class Batch:
    def __init__(self, tokens, acts, mask):
        self.tokens, self.acts, self.mask = tokens, acts, mask


def _random_batches(seed=0, n_batches=4, b=3, s=12, d_in=8, vocab=30, duplicate=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        tokens = torch.randint(1, vocab, (b, s), generator=g)
        tokens[:, 0] = BOS
        acts = torch.randn(b, s, d_in, generator=g)
        acts[:, 0] *= 50  # BOS has huge activations in real models; it must still never show up as a max
        if duplicate:
            tokens[1] = tokens[0]
            acts[1] = acts[0]
        out.append(Batch(tokens, acts, tokens != BOS))
    return out


def _encoder(d_in, d_sae, seed=1, dead=()):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_in, d_sae, generator=g)
    bias = torch.randn(d_sae, generator=g) * 0.5
    for f in dead:
        bias[f] = -1e4

    def encode(x):
        return torch.relu(x @ w + bias)

    return encode


def _brute_force(batches, encode, cfg: DashboardConfig):
    """Every position's activations at once, then plain Python selection per feature."""
    rows = []  # (gid, tokens of the sequence, position, feats of the sequence [s, d_sae])
    seq = 0
    for batch in batches:
        feats = encode(batch.acts.reshape(-1, batch.acts.shape[-1])).reshape(*batch.tokens.shape, -1)
        feats = feats * batch.mask[..., None]
        for r in range(batch.tokens.shape[0]):
            rows.append((seq, batch.tokens[r].tolist(), feats[r]))
            seq += 1
    n_tokens = sum(int(b.mask.sum()) for b in batches)
    d_sae = rows[0][2].shape[1]
    result = {}
    for f in range(d_sae):
        entries = []
        for seq, toks, feats in rows:
            for p in range(len(toks)):
                v = float(feats[p, f])
                if v > 0:
                    lo, hi = max(0, p - cfg.ctx_before), min(len(toks), p + cfg.ctx_after + 1)
                    entries.append((-v, seq * POS_STRIDE + p, tuple(toks[lo:hi]), feats[lo:hi, f].tolist()))
        entries.sort(key=lambda e: (e[0], e[1]))
        seen, top = set(), []
        for e in entries:
            if e[2] not in seen:
                seen.add(e[2])
                top.append(e)
            if len(top) == cfg.top_k:
                break
        result[f] = {"n_firing": len(entries), "frequency": len(entries) / n_tokens, "top": top, "all": entries}
    return result


def _run(batches, encode, d_sae, cfg, **kw):
    out = []
    for chunk in compute_dashboards(batches=lambda: iter(batches), encode=encode, d_sae=d_sae, config=cfg, **kw):
        out.extend(chunk.features())
    return out


@pytest.mark.parametrize("feature_chunk", [64, 7])
def test_streamed_top_k_and_frequencies_equal_brute_force(feature_chunk):
    cfg = DashboardConfig(top_k=5, ctx_before=3, ctx_after=2, n_quantile_bins=4, per_bin=3)
    batches = _random_batches()
    encode = _encoder(8, 24, dead=(5,))
    got = _run(batches, encode, 24, cfg, feature_chunk=feature_chunk)
    want = _brute_force(batches, encode, cfg)
    assert [d["index"] for d in got] == list(range(24))
    for d in got:
        w = want[d["index"]]
        assert d["n_firing"] == w["n_firing"]
        assert d["frequency"] == pytest.approx(w["frequency"])
        assert [(ex["seq"] * POS_STRIDE + ex["pos"]) for ex in d["top"]] == [e[1] for e in w["top"]]
        assert [ex["value"] for ex in d["top"]] == pytest.approx([-e[0] for e in w["top"]])
        assert [tuple(ex["tokens"]) for ex in d["top"]] == [e[2] for e in w["top"]]
        for ex, e in zip(d["top"], w["top"], strict=True):
            assert ex["values"] == pytest.approx(e[3])
            assert ex["values"][ex["center"]] == pytest.approx(ex["value"])
        if w["n_firing"]:
            assert d["max"] == pytest.approx(-w["all"][0][0])
            assert sum(d["histogram"]["counts"]) == w["n_firing"]
            assert sum(q["count"] for q in d["quantiles"]) == w["n_firing"]
    assert got[5]["n_firing"] == 0 and got[5]["top"] == [] and got[5]["quantiles"] == []


def test_bos_is_never_a_max_token():
    cfg = DashboardConfig(top_k=10, ctx_before=4, ctx_after=2)
    batches = _random_batches(seed=3)
    got = _run(batches, _encoder(8, 16, seed=4), 16, cfg)
    assert any(d["top"] for d in got)
    for d in got:
        for ex in d["top"] + [e for q in d["quantiles"] for e in q["examples"]]:
            assert ex["pos"] != 0
            assert ex["tokens"][ex["center"]] != BOS


def test_duplicated_texts_are_shown_once_and_top_k_still_filled():
    cfg = DashboardConfig(top_k=4, ctx_before=2, ctx_after=1)
    batches = _random_batches(seed=5, duplicate=True, n_batches=3)
    encode = _encoder(8, 12, seed=6)
    got = _run(batches, encode, 12, cfg)
    want = _brute_force(batches, encode, cfg)
    for d in got:
        windows = [tuple(ex["tokens"]) for ex in d["top"]]
        assert len(windows) == len(set(windows))
        assert [(ex["seq"] * POS_STRIDE + ex["pos"]) for ex in d["top"]] == [e[1] for e in want[d["index"]]["top"]]


def test_ties_are_broken_by_corpus_position():
    cfg = DashboardConfig(top_k=3, ctx_before=1, ctx_after=0)
    g = torch.Generator().manual_seed(0)
    batches = [Batch(torch.randint(1, 1000, (4, 16), generator=g), torch.ones(4, 16, 2), torch.ones(4, 16, dtype=bool))]

    def encode(x):
        return x[:, :1]  # every position has activation exactly 1

    (d,) = _run(batches, encode, 1, cfg)
    assert [(ex["seq"], ex["pos"]) for ex in d["top"]] == [(0, 0), (0, 1), (0, 2)]


def test_quantile_samples_equal_global_selection():
    cfg = DashboardConfig(top_k=3, ctx_before=2, ctx_after=1, n_quantile_bins=5, per_bin=2)
    batches = _random_batches(seed=7, n_batches=5)
    encode = _encoder(8, 10, seed=8)
    got = _run(batches, encode, 10, cfg)
    want = _brute_force(batches, encode, cfg)
    for d in got:
        f = d["index"]
        entries = want[f]["all"]
        if not entries:
            continue
        # Independent: numpy log bins, then per-bin smallest priorities over the whole corpus.
        values = np.array([-e[0] for e in entries], dtype=np.float32)
        fine = np.clip(np.floor(np.log2(values) * 16), -256, 255).astype(int) + 256
        assert (fine == log_bin_index(torch.tensor(values)).numpy()).all()
        hist = torch.tensor(np.bincount(fine, minlength=512))[None]
        qbin = quantile_lookup(hist, cfg.n_quantile_bins)[0].numpy()[fine]
        gids = torch.tensor([e[1] for e in entries])
        prio = sample_priority(gids, torch.full_like(gids, f), 10, cfg.seed).tolist()
        by_bin = defaultdict(list)
        for q, p, e in zip(qbin, prio, entries, strict=True):
            by_bin[int(q)].append((p, e[1]))
        expected = {q: sorted(gid for _, gid in sorted(v)[: cfg.per_bin]) for q, v in by_bin.items()}
        shown = [sorted(ex["seq"] * POS_STRIDE + ex["pos"] for ex in q["examples"]) for q in d["quantiles"]]
        assert shown == [expected[q] for q in sorted(expected)]
        assert [q["count"] for q in d["quantiles"]] == [len(by_bin[q]) for q in sorted(by_bin)]
        # each sample's window: the tokens and activations around its position, as the brute force has them
        windows = {e[1]: (e[2], e[3]) for e in entries}
        for ex in (ex for q in d["quantiles"] for ex in q["examples"]):
            tokens, values = windows[ex["seq"] * POS_STRIDE + ex["pos"]]
            assert tuple(ex["tokens"]) == tokens and ex["values"] == pytest.approx(values)


def test_tiny_transformer_with_sae_lens_sae_through_disk_cache(tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    torch.manual_seed(0)
    model = HookedTransformer(
        HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=20, d_head=4, n_heads=4, d_vocab=40, act_fn="gelu")
    )
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
        sae.b_enc[3] = -1e4  # a dead feature
    hook = "blocks.1.hook_resid_post"
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(3):
        tokens = torch.randint(1, 40, (4, 20), generator=g)
        tokens[:, 0] = BOS
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=hook)
        batches.append(Batch(tokens, cache[hook], tokens != BOS))
    cache = ActivationCache(tmp_path / "acts")
    assert cache.write(batches) == 3 * 4 * 19
    cfg = DashboardConfig(top_k=6, ctx_before=5, ctx_after=2)
    with torch.no_grad():
        got = [
            d
            for chunk in compute_dashboards(batches=cache, encode=sae.encode, d_sae=32, config=cfg, feature_chunk=10)
            for d in chunk.features()
        ]
        want = _brute_force(batches, sae.encode, cfg)
    for d in got:
        w = want[d["index"]]
        assert d["n_firing"] == w["n_firing"]
        assert [(ex["seq"] * POS_STRIDE + ex["pos"]) for ex in d["top"]] == [e[1] for e in w["top"]]
        assert all(ex["pos"] != 0 for ex in d["top"])
    assert got[3]["n_firing"] == 0 and got[3]["frequency"] == 0.0
    cache.remove()
    assert not (tmp_path / "acts").exists()


def test_output_logit_tokens_match_full_matmul():
    g = torch.Generator().manual_seed(2)
    w_dec, w_u = torch.randn(13, 8, generator=g), torch.randn(8, 50, generator=g)
    pos_v, pos_i, neg_v, neg_i = output_logit_tokens(w_dec=w_dec, unembed=w_u, k=4, chunk=5)
    logits = (w_dec @ w_u).numpy()
    for f in range(13):
        order = np.argsort(-logits[f])
        assert pos_i[f].tolist() == order[:4].tolist()
        assert neg_i[f].tolist() == order[::-1][:4].tolist()
        assert pos_v[f].tolist() == pytest.approx(logits[f][order[:4]].tolist(), rel=1e-5)
        assert math.isclose(float(neg_v[f, 0]), float(logits[f].min()), rel_tol=1e-5)
