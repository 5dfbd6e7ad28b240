from __future__ import annotations

import math

import pytest
import torch

from compute.ml.activations import ActivationBatch
from compute.ml.evaluation import (
    feature_frequencies,
    log_frequency_histogram,
    loss_recovered,
    max_cosine_similarity,
    novelty,
    reconstruction_stats,
)
from compute.ml.training import SAESpec, make_training_sae
from tests.ml_factories import tiny_random_model


def random_sae(d_in=8, d_sae=12, seed=0):
    spec = SAESpec(key="test", method="direct", architecture="standard", d_sae=d_sae, lr=1e-3)
    sae = make_training_sae(spec, d_in=d_in, device="cpu", seed=seed)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
    return sae


def fake_batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(3):
        acts = torch.randn(2, 5, 8, generator=g)
        mask = torch.rand(2, 5, generator=g) > 0.3
        out.append(ActivationBatch(tokens=torch.zeros(2, 5, dtype=torch.long), acts=acts, mask=mask))
    return out


def test_reconstruction_stats_match_brute_force():
    a, b = random_sae(seed=1), random_sae(seed=2)
    batches = fake_batches()
    x = torch.cat([bt.acts[bt.mask] for bt in batches])
    with torch.no_grad():
        out = a(x) + b(x)
        l0 = (a.encode(x) > 0).sum(-1) + (b.encode(x) > 0).sum(-1)
    stats = reconstruction_stats([a, b], batches)
    assert stats.tokens == x.shape[0]
    assert stats.mse == pytest.approx(float((out - x).pow(2).sum(-1).mean()), rel=1e-5)
    assert stats.fvu == pytest.approx(float((out - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()), rel=1e-5)
    assert stats.l0 == pytest.approx(float(l0.float().mean()), rel=1e-5)


def test_feature_frequencies_match_brute_force():
    sae = random_sae(seed=3)
    batches = fake_batches(1)
    x = torch.cat([bt.acts[bt.mask] for bt in batches])
    freq, tokens = feature_frequencies(sae, batches)
    with torch.no_grad():
        expected = (sae.encode(x) > 0).float().mean(0)
    assert tokens == x.shape[0]
    torch.testing.assert_close(freq, expected)
    hist = log_frequency_histogram(torch.tensor([0.0, 1e-3, 0.5, 1.0]), bins=8)
    assert sum(hist["counts"]) == 4 and hist["counts"][0] == 1 and hist["counts"][-1] == 2


@torch.no_grad()
def test_novelty_is_max_cosine_similarity():
    a, b = random_sae(seed=4), random_sae(seed=5)
    result = novelty(a, b)
    for i in range(a.cfg.d_sae):
        sims = [float(torch.nn.functional.cosine_similarity(a.W_dec[i], b.W_dec[j], dim=0)) for j in range(12)]
        assert float(result["decoder"][i]) == pytest.approx(max(sims), abs=1e-5)
        sims = [float(torch.nn.functional.cosine_similarity(a.W_enc[:, i], b.W_enc[:, j], dim=0)) for j in range(12)]
        assert float(result["encoder"][i]) == pytest.approx(max(sims), abs=1e-5)
    self_sim = novelty(a, a)
    assert torch.allclose(self_sim["decoder"], torch.ones(12), atol=1e-5)
    assert max_cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-1.0, 0.0]])).item() == 0.0


def test_loss_recovered_clean_and_zero_ablation_match_brute_force():
    tiny = tiny_random_model(d_model=16, n_layers=2, seed=9)
    bos = tiny.tokenizer.bos_token_id
    windows = [[bos, 40, 41, 42, 43, 44], [bos, 70, 71, 72]]
    hook = "blocks.0.hook_resid_post"
    sae = random_sae(d_in=16, d_sae=32, seed=6)
    result = loss_recovered(tiny, windows, hook_name=hook, saes=[sae], gsae=sae, batch_size=2)
    clean_losses, zero_losses = [], []
    layer0 = tiny.hf_model.model.layers[0]

    def zero_hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        patched = hidden.clone()
        patched[:, 1:] = 0.0  # every non-BOS position is an ordinary token here
        return (patched, *output[1:]) if isinstance(output, tuple) else patched

    for window in windows:
        tokens = torch.tensor([window])
        with torch.no_grad():
            logits = tiny.hf_model(tokens).logits[0, :-1]
            clean_losses += torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="none").tolist()
            handle = layer0.register_forward_hook(zero_hook)
            try:
                logits = tiny.hf_model(tokens).logits[0, :-1]
            finally:
                handle.remove()
            zero_losses += torch.nn.functional.cross_entropy(logits, tokens[0, 1:], reduction="none").tolist()
    assert result.tokens == 5 + 3
    assert result.clean == pytest.approx(sum(clean_losses) / 8, rel=1e-4)
    assert result.zero_ablation == pytest.approx(sum(zero_losses) / 8, rel=1e-4)
    assert result.gsae == pytest.approx(result.patched)
    assert math.isnan(result.fraction_vs_gsae) or result.fraction_vs_gsae == pytest.approx(0.0, abs=1e-6)
    assert result.fraction_vs_zero == pytest.approx(
        (result.zero_ablation - result.patched) / (result.zero_ablation - result.clean)
    )
