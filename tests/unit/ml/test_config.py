"""The typed job configs: defaults, bounds and messages, round trips, and the memory a training run needs."""

from __future__ import annotations

import pytest

from compute.ml.config import (
    GIB,
    ConfigError,
    DashboardJobConfig,
    EvaluationConfig,
    TrainingConfig,
    options_of,
    sae_training_bytes,
)


@pytest.mark.parametrize("cls", [TrainingConfig, EvaluationConfig, DashboardJobConfig])
def test_empty_params_give_the_declared_defaults_and_round_trip(cls):
    config = cls.from_params({})
    assert config == cls()
    assert cls.from_params(config.to_params()) == config
    for opt in options_of(cls):
        assert opt.help, f"{cls.__name__}.{opt.name} has no help text"
        assert opt.check(opt.default) == opt.default  # every default lies within its own bounds


def test_training_defaults_are_the_studys():
    config = TrainingConfig()
    assert (config.gsae_expansion, config.domain_expansion) == (16, 2)
    assert config.methods == ("finetune", "direct", "ssae") and config.sweep == (0.3, 1.0, 3.0)
    assert TrainingConfig(architecture="topk").sweep == (8, 16, 32)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"gsae_tokens": 0}, "gsae_tokens must be a whole number from 1 to"),
        ({"batch_size": True}, "batch_size must be a whole number"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"lr": 0}, "lr must be a number above 0"),
        ({"lr": "0.1"}, "lr must be a number"),
        ({"architecture": "gated"}, "architecture must be one of standard, topk"),
        ({"methods": []}, "methods must be a list of 1 to 4 values"),
        ({"methods": ["gsae", "jumprelu"]}, "methods must be one of"),
        ({"l1_coefficients": list(range(1, 14))}, "l1_coefficients must be a list of 1 to 12"),
        ({"ks": [8, 0]}, "ks must be a whole number from 1"),
        ({"name_prefix": "a b"}, "name_prefix: use letters"),
        ({"hook_name": "blocks.0.hook resid"}, "not a hook name"),
        ({"context_size": 1}, "context_size must be a whole number from 2"),
        ({"precision": "float16"}, "precision must be one of auto, float32, bfloat16"),
    ],
)
def test_bad_training_params_name_the_field(params, message):
    with pytest.raises(ConfigError, match=message) as caught:
        TrainingConfig.from_params(params)
    assert caught.value.field == next(iter(params))


def test_methods_become_a_set_in_canonical_order_and_one_name_is_a_list():
    assert TrainingConfig.from_params({"methods": ["ssae", "gsae", "ssae"]}).methods == ("gsae", "ssae")
    assert TrainingConfig.from_params({"methods": "direct"}).methods == ("direct",)


def test_other_keys_are_ignored_and_none_means_default():
    config = TrainingConfig.from_params({"language_model_id": 3, "lr": None, "gsae_k": 4})
    assert config.lr == TrainingConfig().lr and config.gsae_k == 4


def test_memory_of_one_sae_counted_by_hand():
    # d_in 4, d_sae 8: W_enc and W_dec 2*4*8 = 64, biases 8 + 4 -> 76 parameters; weights, gradients and two
    # Adam moments: 4 * 76 floats; minibatch of 10 tokens: 4 arrays of 10 x 8. Float32: 4 bytes each.
    assert sae_training_bytes(d_in=4, d_sae=8, minibatch_tokens=10) == 4 * (4 * 76 + 4 * 80)


def test_memory_of_a_run_is_its_larger_phase():
    config = TrainingConfig(methods=("gsae", "direct", "ssae"), gsae_expansion=4, domain_expansion=2, ks=(1,))
    config = TrainingConfig.from_params({**config.to_params(), "architecture": "topk", "minibatch_tokens": 10})
    need, what = config.memory_bytes(d_in=4)
    gsae = sae_training_bytes(d_in=4, d_sae=16, minibatch_tokens=10)
    frozen_gsae = 4 * (2 * 4 * 16 + 16 + 4 + 2 * 10 * 16)
    domain = frozen_gsae + 2 * sae_training_bytes(d_in=4, d_sae=8, minibatch_tokens=10)
    assert need == max(gsae, domain)
    assert "features" in what


def test_an_expansion_of_ten_thousand_is_refused_with_the_memory_it_needs():
    config = TrainingConfig.from_params({"methods": ["gsae"], "gsae_expansion": 10_000})
    # d_in 576 -> 5,760,000 features: 2 * 576 * 5.76e6 + 5.76e6 + 576 parameters, 4 copies, plus
    # 4 x 512 x 5.76e6 minibatch values; 4 bytes each.
    parameters = 2 * 576 * 5_760_000 + 5_760_000 + 576
    expected_gib = 4 * (4 * parameters + 4 * 512 * 5_760_000) / GIB
    with pytest.raises(ConfigError, match=f"about {expected_gib:,.1f} GiB") as caught:
        config.check_memory(d_in=576, limit_bytes=16 * GIB)
    assert "5,760,000 features" in str(caught.value) and "16.0 GiB available" in str(caught.value)
    TrainingConfig().check_memory(d_in=576, limit_bytes=16 * GIB)  # the defaults fit easily


def test_k_above_the_width_is_refused():
    config = TrainingConfig.from_params({"architecture": "topk", "ks": [64], "methods": ["direct"]})
    with pytest.raises(ConfigError, match="k 64 exceeds the 32 features"):
        config.check_widths(d_in=16)
    config.check_widths(d_in=32)
