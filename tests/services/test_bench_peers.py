"""`bench train` and `bench dashboards` still run at a tiny size, peer baselines and ratios included."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_bench_train_runs_sae_lens_runner_beside_the_shared_pass():
    from compute.benchmarks import train

    figures = train.run(
        tokens=128, rss_tokens=64, minibatch_tokens=64, context_size=32, batch_size=2, repeats=1, threads=1
    )
    assert figures["saes"][2].startswith("ssae ")
    # The peer trained three plain SAEs of the same widths, and the JSON says SSAE had no equivalent.
    widths = [s.split("d_sae=")[1] for s in figures["saes"]]
    assert [s.split("d_sae=")[1].split(" ")[0] for s in figures["saelens_saes"]] == widths
    assert "no SSAE" in figures["saelens_note"]
    assert figures["saelens_tokens_per_s"] > 0
    ratio = figures["shared_tokens_per_s"] / figures["saelens_tokens_per_s"]
    assert figures["over_saelens"] == pytest.approx(ratio, rel=0.01)


@pytest.fixture(scope="module")
def dashboard_figures():
    from compute.benchmarks import dashboards

    return dashboards.run(tokens=256, context_size=32, expansion=1, features_per_batch=288, repeats=1)


def test_bench_dashboards_counts_packing_against_the_hook_forward(dashboard_figures):
    figures = dashboard_figures
    assert figures["methods_agree"] is True
    assert figures["build_s"] == pytest.approx(figures["dashboards_s"] + figures["pack_for_storage_s"], abs=0.002)
    assert figures["dashboards_over_hook_forward"] == pytest.approx(
        figures["build_s"] / figures["hook_forward_s"], rel=0.02
    )
    assert figures["hook_forward_s"] > 0
    assert 0 < figures["logit_table_s"] < figures["dashboards_s"]  # a part of the build, timed inside it
    assert figures["stored_mib"] > 0


def test_bench_dashboards_times_saedashboards_runner_on_the_same_sae_features_and_tokens(dashboard_figures):
    figures = dashboard_figures
    assert figures["saedashboard_error"] is None
    assert figures["saedashboard_versions"]["sae-dashboard"] == "0.8.0"
    assert figures["saedashboard_versions"]["transformer-lens"].startswith("2.")
    # SmolLM2 rebuilt as a TransformerLens 2.x model sees what ours sees at the SAE's hook (rotary base
    # 100,000 included: TransformerLens's own Llama loader would use 10,000 and miss by far more).
    assert figures["saedashboard_model_max_rel_diff"] < 1e-4
    # Their dashboards cover every feature, and each fired on the same tokens as in ours.
    assert figures["saedashboard_features"] == figures["d_sae"]
    assert figures["saedashboard_firing_agreement"] > 0.999
    assert figures["saedashboard_s"] > 0
    assert figures["over_saedashboard"] > 0
    assert figures["over_saedashboard"] == pytest.approx(figures["saedashboard_s"] / figures["build_s"], rel=0.01)


def test_llama_rebuilt_in_transformer_lens_2_reproduces_our_hook_activations(tmp_path):
    """A tiny random Llama with a non-default rotary base, handed over as files and rebuilt in the peer."""
    import torch
    from safetensors.torch import load_file, save_file

    from compute.benchmarks.peers import PeerSession
    from compute.benchmarks.peers.llama import save_llama
    from compute.ml.activations import hook_activations
    from compute.ml.lm import wrap_hf_model
    from tests.ml_factories import tiny_random_hf_model

    hf_model, tokenizer = tiny_random_hf_model(n_layers=3, seed=3)
    # SmolLM2's rotary base, not TransformerLens's default of 10,000 (the rotary table is rebuilt from it).
    hf_model.config.rope_parameters["rope_theta"] = 100000.0
    hf_model.model.rotary_emb = type(hf_model.model.rotary_emb)(hf_model.config)
    loaded = wrap_hf_model(hf_model, tokenizer, name="tiny-random-llama")
    save_llama(loaded.hf_model, tmp_path)
    tokens = torch.randint(3, len(tokenizer), (3, 40), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = tokenizer.bos_token_id
    save_file({"tokens": tokens}, str(tmp_path / "tokens.safetensors"))
    with PeerSession("sae-dashboard", "saedashboard_run.py", str(tmp_path)) as peer:
        assert peer.ready["versions"]["transformer-lens"].startswith("2.")
        for layer in range(3):
            hook = f"blocks.{layer}.hook_resid_post"
            peer.request(op="acts", hook=hook, rows=3, out=str(tmp_path / "acts.safetensors"))
            theirs = load_file(str(tmp_path / "acts.safetensors"))["acts"]  # [3, 40, d_model]
            with torch.no_grad():
                ours = hook_activations(loaded, tokens, hook_name=hook)
            assert theirs.shape == ours.shape
            torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
