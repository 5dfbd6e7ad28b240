from __future__ import annotations

import pytest
import torch

from compute.ml.activations import iter_activation_batches
from compute.ml.lm import tiny_random_model


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
