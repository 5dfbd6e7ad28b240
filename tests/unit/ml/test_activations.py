from __future__ import annotations

import pytest
import torch

from compute.ml.activations import activation_stream, iter_activation_batches
from tests.ml_factories import tiny_random_model


@pytest.fixture(scope="module")
def tiny():
    return tiny_random_model(d_model=16, n_layers=2, seed=3)


def test_batches_hold_the_hook_activations_and_mask_special_positions(tiny):
    bos, eos = tiny.tokenizer.bos_token_id, tiny.tokenizer.eos_token_id
    windows = [[bos, 40, 41, 42, eos, 43], [bos, 50, 51], [bos, 60, 61, 62, 63, 64], [bos, 70]]
    batches = list(iter_activation_batches(tiny, windows, hook_name="blocks.0.hook_resid_post", batch_size=3))
    assert [b.tokens.shape[0] for b in batches] == [3, 1]
    first = batches[0]
    assert first.acts.shape == (3, 6, 16)
    expected_mask = torch.tensor(
        [[False, True, True, True, False, True], [False, True, True, False, False, False], [False] + [True] * 5]
    )
    assert torch.equal(first.mask, expected_mask)
    # Each window alone through the plain HF model gives the same activations at its real positions.
    for row, window in enumerate(windows[:3]):
        with torch.no_grad():
            hidden = tiny.hf_model(torch.tensor([window]), output_hidden_states=True).hidden_states[1][0]
        torch.testing.assert_close(first.acts[row, : len(window)], hidden, rtol=1e-5, atol=1e-5)
    assert first.flat().shape == (int(expected_mask.sum()), 16)


def test_unknown_hook_is_refused(tiny):
    with pytest.raises(ValueError, match="no hook"):
        list(iter_activation_batches(tiny, [[1, 50]], hook_name="blocks.9.hook_resid_post", batch_size=1))


def test_activation_stream_reads_a_budget_of_windows_from_the_split(tiny):
    # Byte-level tokens: 99 characters + EOS = 100 tokens per document; windows of 10 = BOS + 9 tokens.
    texts = ["abcdefghi" * 11] * 9
    stream = activation_stream(
        texts, tiny, "blocks.0.hook_resid_post", split="all", budget=None, context_size=10, batch_size=4
    )
    shapes = [tuple(b.acts.shape) for b in stream]
    assert sum(s[0] for s in shapes) == 900 // 9 and all(s[1:] == (10, 16) for s in shapes)
    budgeted = activation_stream(
        texts, tiny, "blocks.0.hook_resid_post", split="all", budget=35, context_size=10, batch_size=2
    )
    assert [b.tokens.shape[0] for b in budgeted] == [2, 1]  # 35 // 10 = 3 windows
    train = activation_stream(
        texts, tiny, "blocks.0.hook_resid_post", split="train", budget=None, context_size=10, batch_size=64
    )
    evaluation = activation_stream(
        texts, tiny, "blocks.0.hook_resid_post", split="eval", budget=None, context_size=10, batch_size=64
    )
    n_train, n_eval = sum(b.tokens.shape[0] for b in train), sum(b.tokens.shape[0] for b in evaluation)
    assert n_train + n_eval == 100 and n_eval > 0 and n_train > n_eval
