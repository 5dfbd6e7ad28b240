"""Self-describing SAE folders: sparsity.safetensors as sae-lens saves it, and an SSAE that is loaded only
together with the GSAE it was trained against (the composite reconstructs as the evaluation measured)."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens import SAE
from safetensors.torch import load_file

from compute.ml.evaluation import reconstruction_stats
from compute.ml.saes import GSAEPlusSSAE, SAELoadError, gsae_reference, load_sae, weights_sha256
from compute.ml.training import build_trainer, gsae_spec, run_training, save_trained_sae, sweep_specs
from tests.unit.ml.test_training import batches, gsae, tiny  # noqa: F401 - shared tiny model and GSAE


def test_sparsity_file_holds_log10_firing_frequency_over_training(tmp_path):
    spec = gsae_spec(architecture="standard", d_in=8, expansion=2, lr=0.0)  # lr 0: the SAE never changes
    trainer = build_trainer(spec, d_in=8, scale=1.0, device="cpu")
    torch.manual_seed(0)
    xs = [torch.randn(64, 8) for _ in range(3)]
    for x in xs:
        trainer.step(x, x)
    with torch.no_grad():  # brute force: count, per feature, the tokens it fired on
        fired = sum((trainer.sae.encode(x) > 0).sum(dim=0) for x in xs)
    folder = save_trained_sae(trainer, tmp_path / "sae")
    sparsity = load_file(str(folder / "sparsity.safetensors"))["sparsity"]
    assert sparsity.shape == (16,)
    expected = [math.log10(int(c) / 192 + 1e-10) for c in fired]
    assert sparsity.tolist() == pytest.approx(expected, abs=1e-5)
    assert SAE.load_from_disk(folder).cfg.metadata.method == "gsae"


@pytest.fixture(scope="module")
def ssae_folders(tiny, gsae, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("ssae")
    gsae.save_model(str(root / "gsae"))
    (spec,) = sweep_specs(methods=["ssae"], architecture="standard", d_in=16, l1_coefficients=[0.1], lr=1e-2)
    (trainer,), _ = run_training(
        batches=batches(tiny), specs=[spec], d_in=16, total_tokens=8_000, device="cpu", gsae=gsae,
        minibatch_tokens=256,
    )  # fmt: skip
    save_trained_sae(trainer, root / "ssae", metadata=gsae_reference(gsae, name="web-gsae"))
    return root


def test_ssae_loads_as_gsae_plus_ssae_and_reconstructs_as_evaluated(ssae_folders, tiny, gsae):  # noqa: F811
    composite = load_sae(ssae_folders / "ssae", gsae=ssae_folders / "gsae")
    assert isinstance(composite, GSAEPlusSSAE)
    ssae = SAE.load_from_disk(str(ssae_folders / "ssae"))
    evaluated = reconstruction_stats([gsae, ssae], batches(tiny, "eval"))
    # Independently: the composite's own forward over the same tokens, FVU by hand.
    xs = torch.cat([b.flat() for b in batches(tiny, "eval")])
    with torch.no_grad():
        err = float((composite(xs) - xs).pow(2).sum())
    variance = float((xs - xs.mean(dim=0)).pow(2).sum())
    assert err / variance == pytest.approx(evaluated.fvu, rel=1e-4)
    alone = reconstruction_stats([ssae], batches(tiny, "eval"))
    assert alone.fvu > 2 * evaluated.fvu  # why an SSAE must never be used alone
    torch.testing.assert_close(composite.encode(xs), ssae.encode(xs))


def test_ssae_without_its_gsae_or_with_another_is_refused(ssae_folders, tmp_path):
    with pytest.raises(SAELoadError, match="web-gsae"):
        load_sae(ssae_folders / "ssae")
    other = SAE.load_from_disk(str(ssae_folders / "gsae"))
    with torch.no_grad():
        other.W_dec.mul_(1.01)
    assert weights_sha256(other) != weights_sha256(SAE.load_from_disk(str(ssae_folders / "gsae")))
    with pytest.raises(SAELoadError, match="trained against"):
        load_sae(ssae_folders / "ssae", gsae=other)
    with pytest.raises(SAELoadError, match="not a Specialized SAE"):
        load_sae(ssae_folders / "gsae", gsae=other)
    assert isinstance(load_sae(ssae_folders / "gsae"), SAE)
