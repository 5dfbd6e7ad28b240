"""Massive activations: a tiny random model whose '.' embedding is planted 1000 times too large.

Without the outlier rule an SAE spends itself on those few positions and reconstructs the ordinary ones worse
than their mean (FVU > 1); with it, it beats PCA with as many components as it has active features.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compute.ml.activations import OutlierCount, iter_activation_batches, outlier_mask
from compute.ml.corpora import token_windows
from compute.ml.evaluation import reconstruction_stats
from compute.ml.lm import wrap_hf_model
from compute.ml.training import gsae_spec, run_training
from tests.ml_factories import TRAINING_TEXTS as TEXTS
from tests.ml_factories import tiny_random_hf_model

HOOK = "blocks.0.hook_resid_post"
FACTOR = 10.0


@pytest.fixture(scope="module")
def planted():
    hf_model, tokenizer = tiny_random_hf_model(d_model=16, n_layers=2, seed=5)
    token = tokenizer.convert_tokens_to_ids(".")
    with torch.no_grad():
        hf_model.model.embed_tokens.weight[token] *= 1000.0
    return wrap_hf_model(hf_model, tokenizer, name="planted", device="cpu"), token


def batches(loaded, split="train"):
    windows = token_windows(TEXTS, loaded.tokenizer, 32, split=split, eval_fraction=0.2)
    return iter_activation_batches(loaded, windows, hook_name=HOOK, batch_size=16)


def train(loaded, outlier_norm_factor):
    spec = gsae_spec(architecture="standard", d_in=16, expansion=4, l1_coefficient=0.3, lr=1e-2)
    (trainer,), progress = run_training(
        batches=batches(loaded),
        specs=[spec],
        d_in=16,
        total_tokens=25_000,
        device="cpu",
        minibatch_tokens=256,
        outlier_norm_factor=outlier_norm_factor,
    )
    return trainer.inference_sae(), progress


def ordinary_positions(loaded, token, split):
    """Activations at ordinary positions that are not the planted token, by token id (not by norm): [n, d_in]."""
    rows = []
    for batch in batches(loaded, split):
        rows.append(batch.acts[batch.mask & (batch.tokens != token)])
    return torch.cat(rows).double().numpy()


def test_outlier_mask_finds_exactly_the_planted_positions(planted):
    loaded, token = planted
    batch = next(iter(batches(loaded)))
    found = outlier_mask(batch.acts, batch.mask, FACTOR)
    assert found.any()
    assert torch.equal(found, batch.mask & (batch.tokens == token))


def test_outlier_count_reports_the_planted_share(planted):
    loaded, token = planted
    count = OutlierCount(FACTOR)
    planted_positions = ordinary = 0
    for batch in count.filter_all(batches(loaded, "eval")):
        assert not (batch.mask & (batch.tokens == token)).any()  # left out of what is measured
    for batch in batches(loaded, "eval"):
        ordinary += int(batch.mask.sum())
        planted_positions += int((batch.mask & (batch.tokens == token)).sum())
    assert count.seen == ordinary
    assert count.excluded == planted_positions > 0
    assert math.isclose(count.share, planted_positions / ordinary)


def test_massive_activations_break_training_without_the_rule_and_not_with_it(planted):
    loaded, token = planted
    naive, naive_progress = train(loaded, None)
    held, held_progress = train(loaded, FACTOR)
    assert naive_progress.outliers["excluded_positions"] == 0
    assert held_progress.outliers["excluded_positions"] > 0

    # Both measured on the ordinary positions of the eval split.
    broken = reconstruction_stats([naive], batches(loaded, "eval"), outlier_norm_factor=FACTOR)
    fixed = reconstruction_stats([held], batches(loaded, "eval"), outlier_norm_factor=FACTOR)
    assert broken.fvu > 1.0  # worse than predicting the mean
    assert fixed.excluded_positions > 0 and fixed.excluded_share < 0.05

    # The bound: PCA fitted on the ordinary training positions with ceil(L0) components, on the eval ones.
    train_x, eval_x = ordinary_positions(loaded, token, "train"), ordinary_positions(loaded, token, "eval")
    mean = train_x.mean(axis=0)
    _, _, vt = np.linalg.svd(train_x - mean, full_matrices=False)
    components = vt[: math.ceil(fixed.l0)]  # [k, d_in]
    projected = (eval_x - mean) @ components.T @ components + mean
    pca_fvu = ((eval_x - projected) ** 2).sum() / ((eval_x - eval_x.mean(axis=0)) ** 2).sum()
    assert fixed.tokens == eval_x.shape[0]
    assert fixed.fvu < pca_fvu < 1.0
