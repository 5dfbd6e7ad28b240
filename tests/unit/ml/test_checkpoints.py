"""Training checkpoints: a run stopped at a checkpoint and resumed (from the file, over the batches after it,
without running the model on the ones before) ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from compute.ml.activations import iter_activation_batches
from compute.ml.corpora import token_windows
from compute.ml.training import (
    CheckpointPolicy,
    TrainingCheckpoint,
    TrainingStopped,
    gsae_spec,
    run_training,
    sweep_specs,
)
from tests.ml_factories import tiny_random_model

HOOK = "blocks.0.hook_resid_post"
TEXTS = [f"Sample {i}: the thermal emission of planet {i % 7} varies with its surface layer. " * 2 for i in range(300)]
TOTAL = 2_400


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_model(d_model=16, n_layers=2, seed=5)


def batches(tiny, *, skip: int = 0, forwards: list[int] | None = None):
    windows = token_windows(TEXTS, tiny.tokenizer, 32, split="train")
    for batch in iter_activation_batches(tiny, windows, hook_name=HOOK, batch_size=8, skip_batches=skip):
        if forwards is not None:
            forwards.append(batch.tokens.shape[0])
        yield batch


@pytest.fixture(scope="module")
def gsae(tiny):
    spec = gsae_spec(architecture="standard", d_in=16, expansion=2, l1_coefficient=0.3, lr=1e-2)
    (trainer,), _ = run_training(
        batches=batches(tiny), specs=[spec], d_in=16, total_tokens=1000, device="cpu", minibatch_tokens=128
    )
    return trainer.inference_sae()


def specs(architecture: str):
    values = {"ks": [4]} if architecture == "topk" else {"l1_coefficients": [0.3, 3.0]}
    return sweep_specs(
        methods=["finetune", "direct", "ssae"] if architecture == "standard" else ["direct", "ssae"],
        architecture=architecture,
        d_in=16,
        expansion=2,
        lr=1e-2,
        finetune_lr=1e-3,
        gsae_d_sae=32,
        **values,
    )


def train(tiny, gsae, architecture, **kwargs):
    return run_training(
        specs=specs(architecture), d_in=16, total_tokens=TOTAL, device="cpu", gsae=gsae, minibatch_tokens=100,
        seed=3, outlier_norm_factor=1.28, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tiny, gsae, architecture, tmp_path):
    reference, reference_progress = train(tiny, gsae, architecture, batches=batches(tiny))

    saved: list[TrainingCheckpoint] = []
    stop_after = 2  # checkpoints: the first on schedule, the second when the stop comes

    def save(checkpoint: TrainingCheckpoint) -> None:
        saved.append(checkpoint)
        checkpoint.save(tmp_path / f"ckpt-{len(saved)}.pt")

    policy = CheckpointPolicy(save=save, every_tokens=800, stop_requested=lambda: len(saved) + 1 >= stop_after)
    with pytest.raises(TrainingStopped) as stopped:
        train(tiny, gsae, architecture, batches=batches(tiny), checkpoints=policy)
    assert len(saved) == 2 and 0 < stopped.value.tokens_done < TOTAL
    torch.manual_seed(12345)  # whatever the process did meanwhile, the checkpoint restores torch's RNG

    resume = TrainingCheckpoint.load(tmp_path / "ckpt-2.pt", device="cpu")
    assert resume.position.tokens_done == stopped.value.tokens_done
    forwards: list[int] = []
    resumed, progress = train(
        tiny, gsae, architecture, batches=batches(tiny, skip=resume.position.batches_done, forwards=forwards),
        resume=resume,
    )  # fmt: skip
    assert progress.tokens_done == TOTAL
    # This factor leaves about 1% of the positions out; the resumed run counts them as the uninterrupted one did.
    assert progress.outliers == reference_progress.outliers and progress.outliers["excluded_positions"] > 0
    # The model ran only on what was left (whole windows of 32 tokens, BOS not counted).
    assert sum(forwards) * 31 < TOTAL - resume.position.tokens_done + 8 * 31
    for ref, res in zip(reference, resumed, strict=True):
        assert ref.spec.key == res.spec.key
        for name, tensor in ref.sae.state_dict().items():
            assert torch.equal(tensor, res.sae.state_dict()[name]), (ref.spec.key, name)
        assert ref.stats.as_dict() == res.stats.as_dict()
        assert ref.scale == res.scale


def test_checkpoints_follow_the_token_schedule_at_batch_boundaries(tiny, gsae):
    positions: list[int] = []
    train(
        tiny, gsae, "standard", batches=batches(tiny),
        checkpoints=CheckpointPolicy(save=lambda c: positions.append(c.position.tokens_done), every_tokens=800),
    )  # fmt: skip
    # Each at the first batch boundary 800 tokens after the one before (a batch keeps at most 8 x 31 tokens).
    assert positions, "no checkpoint"
    previous = 0
    for tokens in positions:
        assert previous + 800 <= tokens < previous + 800 + 8 * 31
        previous = tokens
    assert TOTAL - previous < 800 + 8 * 31
