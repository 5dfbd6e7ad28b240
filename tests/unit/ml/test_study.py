"""The study's evaluation math: formulas against hand-computed values, the one-pass evaluation against
evaluating each SAE alone, chunked novelty against brute force, and a synthetic case with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compute.ml.activations import ActivationBatch, iter_activation_batches
from compute.ml.evaluation import feature_frequencies, loss_recovered, reconstruction_stats
from compute.ml.measures import DEAD_FLOOR, alive_median, fraction_recovered, frequency_summary, log10_frequencies
from compute.ml.study import (
    evaluate_domain,
    firing_counts,
    max_cosine_chunked,
    novelty_per_feature,
    random_direction_baseline,
)
from compute.ml.training import SAESpec, gsae_spec, make_training_sae, run_training, sweep_specs
from tests.ml_factories import tiny_random_model


def random_sae(d_in=16, d_sae=24, seed=0):
    spec = SAESpec(key="test", method="direct", architecture="standard", d_sae=d_sae, lr=1e-3)
    sae = make_training_sae(spec, d_in=d_in, device="cpu", seed=seed)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.3)
    return sae


def test_fraction_recovered_hand_computed():
    # GSAE loss 3.0, clean 2.0: patching in something with loss 2.5 recovers half the GSAE's gap.
    assert fraction_recovered(reference=3.0, patched=2.5, clean=2.0) == pytest.approx(0.5)
    assert fraction_recovered(reference=3.0, patched=3.0, clean=2.0) == pytest.approx(0.0)
    assert fraction_recovered(reference=3.0, patched=2.0, clean=2.0) == pytest.approx(1.0)
    # Worse than the reference is negative; zero ablation as reference: (8 - 4) / (8 - 2) = 2/3.
    assert fraction_recovered(reference=3.0, patched=3.5, clean=2.0) == pytest.approx(-0.5)
    assert fraction_recovered(reference=8.0, patched=4.0, clean=2.0) == pytest.approx(2 / 3)
    assert math.isnan(fraction_recovered(reference=2.0, patched=2.5, clean=2.0))


def test_frequency_summary_and_log10_pinning_hand_computed():
    freq = np.array([0.0, 0.0, 1e-3, 1e-1, 1.0])
    summary = frequency_summary(freq, tokens=1000)
    assert (summary.dead, summary.alive) == (2, 3)
    assert summary.median_log10_alive == pytest.approx(-1.0)  # median of -3, -1, 0
    assert summary.resolution_log10 == pytest.approx(-3.0)  # one firing in 1,000 tokens
    np.testing.assert_allclose(log10_frequencies(freq), [-8, -8, -3, -1, 0])
    assert DEAD_FLOOR == 1e-8
    assert alive_median(np.array([0.9, 0.1, 0.5, 0.3]), np.array([True, False, True, True])) == pytest.approx(0.5)
    assert alive_median(np.array([0.9]), np.array([False])) is None


def test_chunked_max_cosine_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    vectors, reference = torch.randn(37, 8, generator=g), torch.randn(53, 8, generator=g) * 3
    brute = torch.tensor(
        [max(float(torch.nn.functional.cosine_similarity(v, r, dim=0)) for r in reference) for v in vectors]
    )
    for row_chunk, ref_chunk in ((5, 7), (1024, 4096), (37, 1)):
        got = max_cosine_chunked(vectors, reference, row_chunk=row_chunk, ref_chunk=ref_chunk)
        torch.testing.assert_close(got, brute, atol=1e-5, rtol=0)
    # Hand-computed: [1, 0] against [0, 2] (cos 0) and [-1, 0] (cos -1).
    assert max_cosine_chunked(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-1.0, 0.0]])).item() == 0.0


def test_novelty_and_random_baseline():
    a, b = random_sae(seed=1), random_sae(seed=2)
    result = novelty_per_feature(a, b, row_chunk=5, ref_chunk=7)
    for i in range(a.cfg.d_sae):
        dec = max(float(torch.nn.functional.cosine_similarity(a.W_dec[i], b.W_dec[j], dim=0)) for j in range(24))
        enc = max(float(torch.nn.functional.cosine_similarity(a.W_enc[:, i], b.W_enc[:, j], dim=0)) for j in range(24))
        assert float(result["decoder"][i]) == pytest.approx(dec, abs=1e-5)
        assert float(result["encoder"][i]) == pytest.approx(enc, abs=1e-5)
    torch.testing.assert_close(novelty_per_feature(a, a)["decoder"], torch.ones(24), atol=1e-5, rtol=0)
    baseline = random_direction_baseline(b, n=500)
    assert baseline["decoder"].shape == (500,)
    # 24 random directions in 16 dimensions: the best match of a random direction is far from 1.
    assert 0.2 < float(baseline["decoder"].median()) < 0.9


def test_study_in_one_pass_equals_each_sae_alone():
    tiny = tiny_random_model(d_model=16, n_layers=2, seed=9)
    bos = tiny.tokenizer.bos_token_id
    windows = [[bos, *range(40, 52)], [bos, 70, 71, 72, 73], [bos, *range(90, 99)], [bos, 33, 34]]
    hook = "blocks.0.hook_resid_post"
    gsae, direct, ssae = random_sae(seed=3), random_sae(seed=4, d_sae=8), random_sae(seed=5, d_sae=8)
    saes = {"g": gsae, "d": direct, "s": ssae}
    stacks = {"g": ["g"], "d": ["d"], "s": ["g", "s"]}
    result = evaluate_domain(tiny, windows, hook_name=hook, saes=saes, stacks=stacks, batch_size=3)

    def batches():
        return iter_activation_batches(tiny, windows, hook_name=hook, batch_size=3)

    for name, stack in (("g", [gsae]), ("d", [direct]), ("s", [gsae, ssae])):
        alone = loss_recovered(tiny, windows, hook_name=hook, saes=stack, gsae=gsae, batch_size=3)
        recon = reconstruction_stats(stack, batches())
        assert result.clean == pytest.approx(alone.clean, rel=1e-5)
        assert result.zero_ablation == pytest.approx(alone.zero_ablation, rel=1e-5)
        assert result.stacks[name].loss == pytest.approx(alone.patched, rel=1e-5)
        assert result.stacks["g"].loss == pytest.approx(alone.gsae, rel=1e-5)
        assert result.loss_tokens == alone.tokens
        assert result.stacks[name].fvu == pytest.approx(recon.fvu, rel=1e-4)
        assert result.stacks[name].mse == pytest.approx(recon.mse, rel=1e-4)
        assert result.stacks[name].l0 == pytest.approx(recon.l0, rel=1e-5)
        assert result.tokens == recon.tokens
    # The SSAE's L0 is the GSAE's plus its own.
    assert result.stacks["s"].l0 == pytest.approx(
        float(result.fired["g"].sum() + result.fired["s"].sum()) / result.tokens, rel=1e-5
    )
    for key, sae in saes.items():
        freq, tokens = feature_frequencies(sae, batches())
        torch.testing.assert_close(result.frequencies(key).float(), freq)
        fired, counted = firing_counts({key: sae}, batches())
        torch.testing.assert_close((fired[key] / counted).float(), freq)


# ----------------------------------------------------------------------------- the synthetic known answer


def synthetic_batches(directions: torch.Tensor, rates: torch.Tensor, *, n: int, seed: int, batch: int = 512):
    """Activations that are sparse non-negative combinations of the given unit directions [k, d]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n // batch):
        on = torch.rand(batch, directions.shape[0], generator=g) < rates  # [batch, k]
        coef = on * (1.0 + 2.0 * torch.rand(batch, directions.shape[0], generator=g))
        acts = (coef @ directions)[:, None, :]  # [batch, 1, d]
        out.append(
            ActivationBatch(
                tokens=torch.zeros(batch, 1, dtype=torch.long), acts=acts, mask=torch.ones(batch, 1, dtype=torch.bool)
            )
        )
    return out


def test_synthetic_domain_directions_are_found_by_the_ssae_not_the_finetune():
    """General text uses directions G; the domain uses G plus domain-only directions. The SSAE (trained on
    what the GSAE misses) learns the domain-only directions: its decoder rows match the GSAE less than the
    fine-tune's, whose encoder stays near the GSAE's; GSAE+SSAE reconstructs what the GSAE alone misses."""
    d = 24
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]  # orthonormal columns
    general_dirs, domain_dirs = basis[:, :16].T, basis[:, 16:22].T  # [16, d], [6, d]
    general = synthetic_batches(general_dirs, torch.full((16,), 0.08), n=8192, seed=1)
    both = torch.cat([general_dirs, domain_dirs])
    rates = torch.cat([torch.full((16,), 0.04), torch.full((6,), 0.15)])
    domain = synthetic_batches(both, rates, n=8192, seed=2)
    held_out = synthetic_batches(both, rates, n=4096, seed=3)

    spec = gsae_spec(architecture="standard", d_in=d, expansion=2, l1_coefficient=0.1, lr=1e-2)
    (gsae_trainer,), _ = run_training(
        batches=general,
        specs=[spec],
        d_in=d,
        total_tokens=8192,
        device="cpu",
        minibatch_tokens=128,
        precision="float32",
    )
    gsae = gsae_trainer.inference_sae()
    specs = sweep_specs(
        methods=["finetune", "ssae"], architecture="standard", d_in=d, expansion=1, l1_coefficients=[0.1],
        lr=1e-2, finetune_lr=1e-4, gsae_d_sae=gsae.cfg.d_sae,
    )  # fmt: skip
    trainers, _ = run_training(
        batches=domain, specs=specs, d_in=d, total_tokens=8192, device="cpu", gsae=gsae, minibatch_tokens=128,
        precision="float32",
    )  # fmt: skip
    trained = {t.spec.method: t.inference_sae() for t in trainers}
    medians = {}
    for method, sae in trained.items():
        freq, _ = feature_frequencies(sae, held_out)
        alive = (freq > 0).numpy()
        sims = {k: v.numpy() for k, v in novelty_per_feature(sae, gsae).items()}
        medians[method] = {k: alive_median(v, alive) for k, v in sims.items()}
    print(medians)
    assert medians["ssae"]["decoder"] < medians["finetune"]["decoder"] - 0.2
    assert medians["finetune"]["encoder"] > 0.9
    assert medians["finetune"]["decoder"] > 0.9
    fvu_gsae = reconstruction_stats([gsae], held_out).fvu
    fvu_stack = reconstruction_stats([gsae, trained["ssae"]], held_out).fvu
    assert fvu_stack < 0.5 * fvu_gsae


def test_training_curve_is_thinned_evenly_and_convergence_is_judged():
    from compute.ml.measures import convergence
    from compute.ml.training import TrainingCurve

    curve = TrainingCurve(max_points=100)
    for step in range(1, 1001):
        curve.add(step, fvu=1.0 / step)
    steps = [p["step"] for p in curve.points]
    assert len(steps) <= 100 and steps == sorted(steps)
    assert len({b - a for a, b in zip(steps, steps[1:], strict=False)}) == 1  # evenly spaced
    assert steps[-1] >= 1000 - (steps[1] - steps[0])
    # Flat over the end: converged. Falling 1/step: the last fifth is well below the fifth before.
    flat = [{"step": s, "fvu": 0.2} for s in range(1, 2001)]
    assert convergence(flat)["undertrained"] is False and convergence(flat)["drop_last_fifth"] == 0.0
    falling = [{"step": s, "fvu": 1.0 - s / 2000} for s in range(1, 2001)]
    # Means: last fifth (steps 1601-2000, mean step 1800.5) 0.09975, the fifth before 0.29975: a drop of 0.2/0.29975.
    verdict = convergence(falling)
    assert verdict["undertrained"] and verdict["drop_last_fifth"] == pytest.approx(0.2 / 0.29975, rel=1e-6)
    short = [{"step": s, "fvu": 0.2} for s in range(1, 201)]
    assert convergence(short)["undertrained"] and "200 optimiser steps" in convergence(short)["reason"]
