from __future__ import annotations

import pytest
import torch
from sae_lens import SAE

from compute.ml.activations import iter_activation_batches
from compute.ml.corpora import token_windows
from compute.ml.evaluation import reconstruction_stats
from compute.ml.training import (
    Schedule,
    TrainingInputError,
    build_trainer,
    gsae_spec,
    make_training_sae,
    run_training,
    save_trained_sae,
    sweep_specs,
)
from tests.ml_factories import TRAINING_TEXTS as TEXTS
from tests.ml_factories import tiny_random_model

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_model(d_model=16, n_layers=2, seed=5)


def batches(tiny, split="train", counter=None):
    windows = token_windows(TEXTS, tiny.tokenizer, 32, split=split, eval_fraction=0.2)
    for batch in iter_activation_batches(tiny, windows, hook_name=HOOK, batch_size=16):
        if counter is not None:
            counter.append(batch.tokens.shape[0])
        yield batch


@pytest.fixture(scope="module")
def gsae(tiny):
    spec = gsae_spec(architecture="standard", d_in=16, expansion=4, l1_coefficient=0.3, lr=1e-2)
    (trainer,), _ = run_training(
        batches=batches(tiny), specs=[spec], d_in=16, total_tokens=25_000, device="cpu", minibatch_tokens=256
    )
    return trainer.inference_sae()


def fresh_inference_sae(spec, d_in, tmp_path):
    sae = make_training_sae(spec, d_in=d_in, device="cpu")
    sae.save_inference_model(tmp_path)
    return SAE.load_from_disk(tmp_path)


def test_gsae_training_lowers_reconstruction_error_well_below_initialisation(tiny, gsae, tmp_path):
    spec = gsae_spec(architecture="standard", d_in=16, expansion=4)
    initial = reconstruction_stats([fresh_inference_sae(spec, 16, tmp_path)], batches(tiny, "eval"))
    trained = reconstruction_stats([gsae], batches(tiny, "eval"))
    assert trained.tokens == initial.tokens > 100
    assert trained.fvu < 0.3 * initial.fvu
    assert trained.fvu < 0.3


def test_saved_sae_reloads_and_matches_the_trained_weights_on_raw_activations(tiny, tmp_path):
    spec = gsae_spec(architecture="topk", d_in=16, expansion=2, k=4)
    (trainer,), _ = run_training(
        batches=batches(tiny), specs=[spec], d_in=16, total_tokens=3000, device="cpu", minibatch_tokens=256
    )
    assert trainer.scale != pytest.approx(1.0)
    path = save_trained_sae(trainer, tmp_path / "sae")
    assert (path / "cfg.json").is_file() and (path / "sae_weights.safetensors").is_file()
    loaded = SAE.load_from_disk(path)
    x = next(batches(tiny)).flat()
    with torch.no_grad():
        # Independent route: the training SAE works in scaled units, so scale in and unscale out.
        expected_out = trainer.sae(x * trainer.scale) / trainer.scale
        expected_acts = trainer.sae.encode(x * trainer.scale)
    torch.testing.assert_close(loaded(x), expected_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loaded.encode(x), expected_acts, rtol=1e-4, atol=1e-4)
    assert int((loaded.encode(x) > 0).sum(dim=-1).max()) <= 4


def test_finetune_starts_exactly_at_the_gsae(tiny, gsae):
    (spec,) = sweep_specs(methods=["finetune"], architecture="standard", d_in=16, l1_coefficients=[1.0], gsae_d_sae=64)
    trainer = build_trainer(spec, d_in=16, scale=0.37, device="cpu", gsae=gsae)
    x = next(batches(tiny)).flat()
    with torch.no_grad():
        torch.testing.assert_close(trainer.sae(x * 0.37) / 0.37, gsae(x), rtol=1e-4, atol=1e-4)
    assert trainer.spec.lr == 1e-4


def test_one_pass_trains_all_domain_variants_and_ssae_adds_to_gsae(tiny, gsae):
    specs = sweep_specs(
        methods=["finetune", "direct", "ssae"],
        architecture="standard",
        d_in=16,
        l1_coefficients=[0.1, 1.0],
        gsae_d_sae=gsae.cfg.d_sae,
        lr=1e-2,
    )
    seen: list[int] = []
    trainers, progress = run_training(
        batches=batches(tiny, counter=seen),
        specs=specs,
        d_in=16,
        total_tokens=20_000,
        device="cpu",
        gsae=gsae,
        minibatch_tokens=256,
    )
    assert [t.spec.key for t in trainers] == [
        "finetune-standard-l1=0.1",
        "finetune-standard-l1=1",
        "direct-standard-l1=0.1",
        "direct-standard-l1=1",
        "ssae-standard-l1=0.1",
        "ssae-standard-l1=1",
    ]
    assert all(t.stats.tokens == 20_000 == progress.tokens_done for t in trainers)
    # One model pass for all six SAEs: the windows seen cover the token budget once, not six times.
    kept_per_window = 31 - 1  # 32 tokens minus BOS, minus at most one EOS in 31 text tokens
    assert sum(seen) * kept_per_window < 20_000 + 16 * 32 * 2
    by_key = {t.spec.key: t.inference_sae() for t in trainers}
    assert by_key["direct-standard-l1=1"].cfg.d_sae == 32 and by_key["finetune-standard-l1=1"].cfg.d_sae == 64
    gsae_only = reconstruction_stats([gsae], batches(tiny, "eval"))
    with_ssae = reconstruction_stats([gsae, by_key["ssae-standard-l1=0.1"]], batches(tiny, "eval"))
    assert with_ssae.fvu < 0.8 * gsae_only.fvu
    assert with_ssae.l0 > gsae_only.l0
    direct = reconstruction_stats([by_key["direct-standard-l1=0.1"]], batches(tiny, "eval"))
    assert direct.fvu < 0.5
    # Higher L1 gives sparser codes (one point further along the Pareto curve).
    sparse = reconstruction_stats([by_key["direct-standard-l1=1"]], batches(tiny, "eval"))
    assert sparse.l0 < direct.l0


def test_bad_combinations_are_refused_before_any_model_pass(tiny, gsae):
    ssae = sweep_specs(methods=["ssae"], architecture="standard", d_in=16, l1_coefficients=[1.0])
    untouched: list[int] = []
    with pytest.raises(TrainingInputError, match="needs a GSAE"):
        run_training(batches=batches(tiny, counter=untouched), specs=ssae, d_in=16, total_tokens=100, device="cpu")
    with pytest.raises(TrainingInputError, match="needs a GSAE"):
        sweep_specs(methods=["finetune"], architecture="standard", d_in=16)
    with pytest.raises(TrainingInputError, match="16-dimensional"):
        run_training(batches=batches(tiny), specs=ssae, d_in=32, total_tokens=100, device="cpu", gsae=gsae)
    with pytest.raises(TrainingInputError, match="gave no tokens"):
        run_training(batches=iter([]), specs=ssae[:0], d_in=16, total_tokens=100, device="cpu")
    with pytest.raises(TrainingInputError, match="fine-tune it with architecture 'standard'"):
        topk = sweep_specs(methods=["finetune"], architecture="topk", d_in=16, ks=[4], gsae_d_sae=64)
        build_trainer(topk[0], d_in=16, scale=1.0, device="cpu", gsae=gsae)


def test_bfloat16_autocast_trains_as_well_as_float32(tiny):
    """Mixed precision only changes the matmuls: the same run ends at nearly the same error."""
    spec = gsae_spec(architecture="standard", d_in=16, expansion=4, l1_coefficient=0.3, lr=1e-2)
    fvu = {}
    for precision in ("float32", "bfloat16"):
        (trainer,), _ = run_training(
            batches=batches(tiny), specs=[spec], d_in=16, total_tokens=12_000, device="cpu",
            minibatch_tokens=256, precision=precision,
        )  # fmt: skip
        assert trainer.autocast == (torch.bfloat16 if precision == "bfloat16" else None)
        assert trainer.sae.W_enc.dtype == torch.float32  # parameters stay float32
        fvu[precision] = reconstruction_stats([trainer.inference_sae()], batches(tiny, "eval")).fvu
    assert fvu["float32"] < 0.5
    assert fvu["bfloat16"] == pytest.approx(fvu["float32"], rel=0.15)


def test_precision_is_validated():
    from compute.ml.training import autocast_dtype

    assert autocast_dtype("cpu", "float32") is None
    assert autocast_dtype("cpu", "bfloat16") is torch.bfloat16
    with pytest.raises(TrainingInputError, match="precision must be one of"):
        autocast_dtype("cpu", "fp8")


def test_schedule_warms_up_holds_and_decays_as_shares_of_the_run():
    schedule = Schedule(lr_warm_up=0.1, lr_decay=0.2, sparsity_warm_up=0.05, grad_clip_norm=1.0)
    # 1,000 tokens: lr rises over the first 100, falls over the last 200; sparsity rises over the first 50.
    assert schedule.lr_factor(done=0, step=50, total=1000) == pytest.approx(0.5)
    assert schedule.lr_factor(done=50, step=50, total=1000) == pytest.approx(1.0)
    assert schedule.lr_factor(done=500, step=50, total=1000) == pytest.approx(1.0)
    assert schedule.lr_factor(done=850, step=50, total=1000) == pytest.approx(150 / 200)
    assert schedule.lr_factor(done=950, step=50, total=1000) == pytest.approx(50 / 200)
    assert schedule.sparsity_factor(done=0, step=10, total=1000) == pytest.approx(10 / 50)
    assert schedule.sparsity_factor(done=60, step=10, total=1000) == pytest.approx(1.0)
    flat = Schedule(lr_warm_up=0.0, lr_decay=0.0, sparsity_warm_up=0.0)
    assert flat.lr_factor(done=0, step=1, total=10) == flat.sparsity_factor(done=0, step=1, total=10) == 1.0


def test_a_step_uses_the_scheduled_learning_rate_sparsity_and_gradient_clip(tiny):
    x = next(batches(tiny)).flat()[:100]  # [100, d_in]
    spec = gsae_spec(architecture="standard", d_in=16, expansion=2, l1_coefficient=3.0)
    warm = Schedule(lr_warm_up=0.5, lr_decay=0.0, sparsity_warm_up=0.5, grad_clip_norm=1e-3)
    trainers = {
        name: build_trainer(spec, d_in=16, scale=1.0, device="cpu", schedule=schedule, total_tokens=1000)
        for name, schedule in {"warm": warm, "flat": Schedule(0.0, 0.0, 0.0, 1e6)}.items()
    }
    for trainer in trainers.values():
        trainer.step(x, x)
    # The first 100 of 1,000 tokens: lr at 100/500 of its value, and the L1 term at 100/500 of its weight.
    assert trainers["warm"].optimizer.param_groups[0]["lr"] == pytest.approx(spec.lr * 0.2)
    assert trainers["flat"].optimizer.param_groups[0]["lr"] == pytest.approx(spec.lr)
    sparsity = {name: t.stats.loss - t.stats.mse for name, t in trainers.items()}
    assert sparsity["flat"] > 0
    assert sparsity["warm"] == pytest.approx(0.2 * sparsity["flat"], rel=1e-2)  # bfloat16 rounding
    # The gradients the optimiser stepped with were clipped to the declared norm.
    grads = [p.grad for p in trainers["warm"].sae.parameters() if p.grad is not None]
    assert float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) <= 1e-3 * (1 + 1e-4)
    grads = [p.grad for p in trainers["flat"].sae.parameters() if p.grad is not None]
    assert float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))) > 1e-3
