"""BatchTopK and JumpReLU SAEs, trained through sae-lens's own training classes in all four methods, saved
so that stock `SAE.load_from_disk` loads them, with outputs equal to a hand-written JumpReLU forward of the
trained weights (BatchTopK is saved as JumpReLU with its learnt threshold, as sae-lens does)."""

from __future__ import annotations

import pytest
import torch
from sae_lens import SAE

from compute.ml.training import gsae_spec, run_training, save_trained_sae, sweep_specs
from tests.unit.ml.test_training import batches, tiny  # noqa: F401 - the shared tiny model fixture

ARCHITECTURES = ("batchtopk", "jumprelu", "matryoshka_batchtopk")


def _train(tiny, specs, *, gsae=None):  # noqa: F811
    trainers, _ = run_training(
        batches=batches(tiny), specs=specs, d_in=16, total_tokens=4_096, device="cpu", minibatch_tokens=256,
        gsae=gsae, seed=3,
    )  # fmt: skip
    return trainers


def _jumprelu_forward(trainer, x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The trained weights applied by hand in scaled units: pre = (xs - b_dec) W_enc + b_enc,
    acts = pre where pre > threshold (else 0), out = (acts W_dec + b_dec) / scale."""
    sae, s = trainer.sae, trainer.scale
    xs = x * s
    if sae.cfg.apply_b_dec_to_input:
        xs = xs - sae.b_dec
    pre = xs @ sae.W_enc + sae.b_enc
    acts = torch.where(pre > threshold, pre, torch.zeros_like(pre))
    return (acts @ sae.W_dec + sae.b_dec) / s


@pytest.fixture(scope="module", params=ARCHITECTURES)
def trained(request, tiny, tmp_path_factory):  # noqa: F811
    """A GSAE and the three domain SAEs of one architecture, each saved and loaded back with stock sae-lens."""
    architecture = request.param
    root = tmp_path_factory.mktemp(architecture)
    (gsae_trainer,) = _train(tiny, [gsae_spec(architecture=architecture, d_in=16, expansion=4, k=4, lr=1e-2)])
    gsae = SAE.load_from_disk(save_trained_sae(gsae_trainer, root / "gsae"))
    specs = sweep_specs(
        methods=["finetune", "direct", "ssae"], architecture=architecture, d_in=16, ks=[4], l0_coefficients=[1.0],
        gsae_d_sae=gsae.cfg.d_sae, lr=1e-2,
    )  # fmt: skip
    trainers = [gsae_trainer, *_train(tiny, specs, gsae=gsae)]
    loaded = {t.spec.method: SAE.load_from_disk(save_trained_sae(t, root / t.spec.key)) for t in trainers}
    return architecture, {t.spec.method: t for t in trainers}, loaded


@pytest.mark.parametrize("method", ["gsae", "finetune", "direct", "ssae"])
def test_saved_sae_loads_with_stock_sae_lens_and_matches_the_trained_weights(trained, method, tiny):  # noqa: F811
    architecture, trainers, loaded = trained
    trainer, sae = trainers[method], loaded[method]
    assert sae.cfg.architecture() == "jumprelu"  # BatchTopK is saved for inference as JumpReLU
    if architecture != "jumprelu":
        threshold = trainer.sae.topk_threshold
        assert float(threshold) > 0  # learnt from the minimum positive activations seen
        torch.testing.assert_close(sae.threshold, torch.full_like(sae.threshold, float(threshold)))
    else:
        threshold = trainer.sae.threshold
        torch.testing.assert_close(sae.threshold, threshold.detach())
    x = next(batches(tiny, "eval")).flat()
    with torch.no_grad():
        torch.testing.assert_close(sae(x), _jumprelu_forward(trainer, x, threshold), rtol=1e-4, atol=1e-4)
    assert sae.cfg.d_sae == (64 if method in ("gsae", "finetune") else 32)


def test_training_lowers_the_error_and_keeps_codes_sparse(trained, tiny):  # noqa: F811
    architecture, trainers, _ = trained
    for method, trainer in trainers.items():
        if method == "finetune":  # starts from the trained GSAE: it stays as good, it has nothing to drop from
            assert trainer.stats.fvu < 0.5, trainer.spec.key
        else:
            assert trainer.stats.fvu < 0.8 * trainer.stats.fvu_initial, trainer.spec.key
        assert trainer.stats.l0 < trainer.spec.d_sae / 2, trainer.spec.key
    if architecture != "jumprelu":
        # On average k active features per token over a minibatch.
        assert trainers["direct"].stats.l0 == pytest.approx(4, abs=0.01)


def test_sweep_keys_name_the_architecture_and_its_sparsity():
    keys = [s.key for s in sweep_specs(methods=["direct"], architecture="jumprelu", d_in=16, l0_coefficients=[0.5, 2])]
    assert keys == ["direct-jumprelu-l0=0.5", "direct-jumprelu-l0=2"]
    keys = [s.key for s in sweep_specs(methods=["ssae"], architecture="batchtopk", d_in=16, ks=[3])]
    assert keys == ["ssae-batchtopk-k=3"]


def test_matryoshka_loss_adds_each_inner_prefix_reconstruction_error(tiny):  # noqa: F811
    from compute.ml.training import SAESpec, build_trainer

    spec = SAESpec("m", "direct", "matryoshka_batchtopk", 64, 0.0, k=4)  # lr 0: the step leaves the weights
    trainer = build_trainer(spec, d_in=16, scale=1.0, device="cpu", seed=1)
    assert trainer.sae.cfg.matryoshka_widths == [8, 16, 32, 64]
    x = next(batches(tiny, "train")).flat()[:256].float()
    with torch.no_grad():
        sae = trainer.sae
        acts = sae.encode(x)  # batch top-k over these 256 tokens
        by_hand = (acts @ sae.W_dec + sae.b_dec - x).pow(2).sum(dim=-1).mean()  # the whole SAE
        for width in (8, 16, 32):  # each prefix alone, decoded by hand
            prefix = acts[:, :width] @ sae.W_dec[:width] + sae.b_dec
            by_hand += (prefix - x).pow(2).sum(dim=-1).mean()
    trainer.step(x, x)  # no feature is dead at the first step: no auxiliary loss
    assert trainer.stats.loss == pytest.approx(float(by_hand), rel=1e-4)
