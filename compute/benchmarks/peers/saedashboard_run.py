"""Runs inside the SAEDashboard environment: SAEDashboard's own `SaeVisRunner` over our model, SAE and tokens.

Usage: python saedashboard_run.py FOLDER, where FOLDER holds `llama.json` + `weights.safetensors` (see
`compute.benchmarks.peers.llama.save_llama`) and `tokens.safetensors` (`tokens`: [batch, seq] int64).

The model is rebuilt as a TransformerLens 2.x `HookedSAETransformer` from those fields, with TransformerLens's
own `convert_llama_weights` and no weight processing (no folding, no centring), so its hooks see what ours
see. Then it answers one JSON request per stdin line with one JSON line on stdout:

  {"op": "acts", "hook": H, "rows": N, "out": PATH}  ->  saves the hook's activations over the first N
   windows of tokens to PATH
  {"op": "dashboards", "hook": H, "sae": DIR, "ignore_tokens": [...], "minibatch_size_features": F,
   "minibatch_size_tokens": T, "cache_dir": DIR}  ->  loads the SAE with sae-lens's `SAE.load_from_disk`,
   times `SaeVisRunner(SaeVisConfig(...)).run(encoder=sae, model=model, tokens=tokens)` and reports
   seconds and, per feature, how many tokens it fired on (from SAEDashboard's activation histograms)

It first prints {"ready": true, ...} with its package versions and load time.
"""

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from sae_dashboard.sae_vis_data import SaeVisConfig
from sae_dashboard.sae_vis_runner import SaeVisRunner
from sae_lens import SAE, HookedSAETransformer
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformerConfig
from transformer_lens.pretrained.weight_conversions import convert_llama_weights
from transformers import LlamaConfig, LlamaForCausalLM

# transformers 4.x LlamaConfig argument <- field of llama.json
HF_NAMES = {
    "vocab_size": "d_vocab",
    "hidden_size": "d_model",
    "intermediate_size": "d_mlp",
    "num_hidden_layers": "n_layers",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_key_value_heads",
    "head_dim": "d_head",
    "max_position_embeddings": "n_ctx",
    "rms_norm_eps": "eps",
    "hidden_act": "act_fn",
    "rope_theta": "rope_theta",
    "tie_word_embeddings": "tie_word_embeddings",
}


def build_model(folder: Path, n_ctx: int) -> HookedSAETransformer:
    """A TransformerLens 2.x Llama from the saved fields and weights (float32, CPU)."""
    fields = json.loads((folder / "llama.json").read_text())
    hf_config = LlamaConfig(**{hf_name: fields[name] for hf_name, name in HF_NAMES.items()})
    hf_model = LlamaForCausalLM(hf_config)
    missing, unexpected = hf_model.load_state_dict(load_file(str(folder / "weights.safetensors")), strict=False)
    allowed_missing = {"lm_head.weight"} if fields["tie_word_embeddings"] else set()
    if set(missing) - allowed_missing or unexpected:
        raise ValueError(f"weights do not fit the config: missing {missing}, unexpected {unexpected}")
    if fields["tie_word_embeddings"]:
        hf_model.tie_weights()
    n_kv = fields["n_key_value_heads"]
    cfg = HookedTransformerConfig(
        d_model=fields["d_model"],
        d_head=fields["d_head"],
        n_heads=fields["n_heads"],
        # TransformerLens uses grouped-query attention only when this is set (as its own Llama loader does).
        n_key_value_heads=n_kv if n_kv != fields["n_heads"] else None,
        d_mlp=fields["d_mlp"],
        n_layers=fields["n_layers"],
        # The causal-mask buffers are n_ctx x n_ctx per layer; the windows never exceed their own length.
        n_ctx=min(fields["n_ctx"], n_ctx),
        eps=fields["eps"],
        d_vocab=fields["d_vocab"],
        act_fn=fields["act_fn"],
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_adjacent_pairs=False,
        rotary_dim=fields["d_head"],
        rotary_base=fields["rope_theta"],
        final_rms=True,
        gated_mlp=True,
        original_architecture="LlamaForCausalLM",
        dtype=torch.float32,
        device="cpu",
    )
    model = HookedSAETransformer(cfg)
    model.load_and_process_state_dict(
        convert_llama_weights(hf_model, cfg),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    return model.eval()


def hook_layer(hook: str) -> int:
    return int(hook.split(".")[1])


def acts(model, tokens: torch.Tensor, request: dict) -> dict:
    hook = request["hook"]
    rows = tokens[: request.get("rows", len(tokens))]
    with torch.inference_mode():
        _, cache = model.run_with_cache(rows, names_filter=[hook], stop_at_layer=hook_layer(hook) + 1)
    save_file({"acts": cache[hook].contiguous()}, request["out"])
    return {"ok": True}


def dashboards(model, tokens: torch.Tensor, request: dict) -> dict:
    sae = SAE.load_from_disk(request["sae"], device="cpu")
    config = SaeVisConfig(
        hook_point=request["hook"],
        features=range(sae.cfg.d_sae),
        minibatch_size_features=request["minibatch_size_features"],
        minibatch_size_tokens=request["minibatch_size_tokens"],
        ignore_tokens=set(request["ignore_tokens"]),
        device="cpu",
        dtype="float32",
        cache_dir=Path(request["cache_dir"]) if request.get("cache_dir") else None,
        verbose=False,
    )
    started = time.perf_counter()
    data = SaeVisRunner(config).run(encoder=sae, model=model, tokens=tokens)
    seconds = time.perf_counter() - started
    features = sorted(data.feature_data_dict)
    n_firing = [int(sum(data.feature_data_dict[f].acts_histogram_data.bar_heights)) for f in features]
    return {"seconds": seconds, "features": len(features), "n_firing": n_firing}


def main() -> None:
    # Replies alone on stdout: anything the libraries print goes to stderr.
    replies, sys.stdout = sys.stdout, sys.stderr
    folder = Path(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else torch.get_num_threads())
    started = time.perf_counter()
    tokens = load_file(str(folder / "tokens.safetensors"))["tokens"]
    model = build_model(folder, n_ctx=tokens.shape[1])
    ready = {
        "ready": True,
        "load_s": time.perf_counter() - started,
        "torch_threads": torch.get_num_threads(),
        "versions": {p: version(p) for p in ("sae-dashboard", "sae-lens", "transformer-lens", "transformers", "torch")},
    }
    print(json.dumps(ready), file=replies, flush=True)
    ops = {"acts": acts, "dashboards": dashboards}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        print(json.dumps(ops[request["op"]](model, tokens, request)), file=replies, flush=True)


if __name__ == "__main__":
    main()
