"""The GPU check's comparison, run where no GPU is: a float32 run against itself, and a bfloat16 run of the same
model against the float32 one (as the CUDA card's run is compared with the CPU's). The comparison itself is
checked against hand-computed bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from compute.ml.gpu_check import TOLERANCES, check, compare, run_stages
from compute.ml.lm import wrap_hf_model
from tests.ml_factories import tiny_random_hf_model

HOOK = "blocks.1.hook_resid_post"
TEXTS = [f"The radio emission of planet {i} varies with the surface layer of moon {3 * i}." for i in range(300)]
SIZES = {"d_sae": 64, "tokens": 1024, "train_tokens": 2048}


def test_compare_holds_each_output_to_atol_plus_rtol_times_the_reference():
    reference = {"a": [1.0, 2.0], "b": [0.0], "c": [1.0, 1.0], "d": [5.0]}
    candidate = {"a": [1.05, 2.0], "b": [float("nan")], "c": [1.0]}
    loose = compare(reference, candidate, rtol=0.05, atol=0.01)  # bound at 1.0: 0.01 + 0.05 = 0.06 >= 0.05
    assert loose["a"]["ok"] and math.isclose(loose["a"]["max_abs_diff"], 0.05)
    assert math.isclose(loose["a"]["excess"], 0.05 - 0.06, abs_tol=1e-12)
    tight = compare(reference, candidate, rtol=0.01, atol=0.01)  # bound 0.02 < 0.05: out by 0.03
    assert not tight["a"]["ok"] and math.isclose(tight["a"]["excess"], 0.03, abs_tol=1e-12)
    assert not loose["b"]["ok"]  # not finite
    assert not loose["c"]["ok"] and loose["c"]["max_abs_diff"] is None  # its shape changed
    assert not loose["d"]["ok"]  # missing


def tiny(dtype: torch.dtype):
    hf_model, tokenizer = tiny_random_hf_model(d_model=32, n_layers=2, n_heads=4, d_mlp=64, n_ctx=256, seed=0)
    return wrap_hf_model(hf_model.to(dtype), tokenizer, name="tiny", device="cpu")


@pytest.fixture(scope="module")
def float32_run():
    return run_stages(tiny(torch.float32), TEXTS, hook_name=HOOK, device="cpu", precision="float32", **SIZES)


def test_every_stage_reports_outputs_and_a_throughput(float32_run):
    assert set(float32_run) == {"probe", "study", "dashboards", "train"}
    for run in float32_run.values():
        assert run.tokens > 0 and run.tokens_per_s > 0
    probe = float32_run["probe"].outputs["feature_acts"]
    assert probe.shape == (float32_run["probe"].tokens, SIZES["d_sae"]) and (probe >= 0).all()
    # The dashboards' per-feature max is the probe's, over the same tokens: two code paths, one answer.
    np.testing.assert_allclose(float32_run["dashboards"].outputs["max"], probe.max(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float32_run["dashboards"].outputs["firing_fraction"], (probe > 0).mean(axis=0))


def test_a_float32_rerun_passes_at_float32_tolerance(float32_run):
    again = run_stages(tiny(torch.float32), TEXTS, hook_name=HOOK, device="cpu", precision="float32", **SIZES)
    report = check(float32_run, again, precision="float32")
    assert report["ok"], report


def test_a_bfloat16_run_passes_at_bfloat16_tolerance_but_not_at_float32(float32_run):
    low = run_stages(tiny(torch.bfloat16), TEXTS, hook_name=HOOK, device="cpu", precision="bfloat16", **SIZES)
    assert check(float32_run, low, precision="bfloat16")["ok"]
    strict = check(float32_run, low, precision="float32")
    assert not strict["stages"]["probe"]["ok"]  # bfloat16 arithmetic shows at float32's bound
    want, got = float32_run["probe"].outputs["feature_acts"], low["probe"].outputs["feature_acts"]
    bf16 = TOLERANCES["bfloat16"]
    assert TOLERANCES["float32"]["atol"] < np.abs(got - want).max() <= bf16["atol"] + bf16["rtol"] * np.abs(want).max()


def test_gpu_check_without_cuda_says_so_and_exits_zero(capsys, monkeypatch):
    from django.core.management import call_command

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    call_command("gpu_check")
    out = capsys.readouterr().out
    assert '"cuda": false' in out and "No CUDA device" in out
