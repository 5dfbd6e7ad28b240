"""`python manage.py bench synthetic`: our trainer against sae-lens's `SyntheticSAERunner` in a synthetic world.

One world (compute.ml.synthetic, built from `SyntheticWorldConfig`'s options below). For each architecture
(TopK and BatchTopK by default: their L0 is set by k, so both trainers run at the same L0), the same SAE width, k,
learning rate, batch size and sample budget are trained on the world's general stream
(a) by our trainer (`compute.ml.training.run_training`, reading the world through the ordinary activation path), and
(b) by sae-lens's `SyntheticSAERunner` (its public API) on the same world's `SyntheticModel`, whose generator draws
    from the same general distribution (independent samples of it);
interleaved and repeated `repeats` times. Both are scored by sae-lens's `eval_sae_on_synthetic_data` on the same
fresh samples, each as saved for inference (BatchTopK kinds as JumpReLU with the learnt threshold): MCC, F1 and L0
(the medians of the repeats), and throughput in samples per second (the best repeat).
Then the study once with our trainer: a GSAE on the general stream and GSAE-finetune, Direct SAE and SSAE on D, each
scored by its recall of the domain features (decoder cosine >= RECOVERY_THRESHOLD).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

from compute.ml.choices import matryoshka_widths
from compute.ml.config import SyntheticWorldConfig

DEFAULTS: dict[str, Any] = {
    "general_features": 1024,
    "domain_features": 64,
    "hidden_dim": 128,
    "samples": 100_000,
    "expansion": 8,
    "k": 8,
    "domain_k": 4,
    "lr": 3e-3,
    "batch_size": 1024,
    "eval_samples": 20_000,
    "architectures": "topk,batchtopk",
    "repeats": 2,
    "device": "cpu",
    "precision": "float32",
    "seed": 0,
}


def _world(options: dict[str, Any]):
    from compute.ml.synthetic import build_world, load_synthetic_model

    config = SyntheticWorldConfig(
        general_features=int(options["general_features"]),
        domain_features=int(options["domain_features"]),
        hidden_dim=int(options["hidden_dim"]),
        general_documents=max(1, 4 * int(options["samples"]) // 128),
        domain_documents=max(1, 4 * int(options["samples"]) // 128),
        document_tokens=128,
        seed=int(options["seed"]),
    )
    folder = build_world(config).save(tempfile.mkdtemp(prefix="bench-world-"))
    loaded = load_synthetic_model(folder, name="bench-world", device=options["device"])
    return loaded.model.world, loaded


def _batches(world, loaded, stream: str, samples: int, options: dict[str, Any]):
    from compute.ml.activations import activation_stream
    from compute.ml.synthetic import HOOK_NAME

    return activation_stream(
        world.documents(stream), loaded, HOOK_NAME, split="train", budget=samples, context_size=128, batch_size=8,
        device=options["device"],
    )  # fmt: skip


def _ours(world, loaded, architecture: str, options: dict[str, Any]):
    from compute.ml.training import gsae_spec, run_training

    samples = int(options["samples"])
    spec = gsae_spec(
        architecture=architecture, d_in=world.config.hidden_dim, expansion=int(options["expansion"]),
        k=int(options["k"]), lr=float(options["lr"]),
    )  # fmt: skip
    start = time.perf_counter()
    (trainer,), progress = run_training(
        batches=_batches(world, loaded, "general", samples, options), specs=[spec], d_in=world.config.hidden_dim,
        total_tokens=samples, device=options["device"], minibatch_tokens=int(options["batch_size"]),
        seed=int(options["seed"]), precision=options["precision"],
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return trainer.inference_sae(), progress.tokens_done / seconds


def _saelens(world, architecture: str, options: dict[str, Any]):
    from sae_lens import LoggingConfig
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig
    from sae_lens.synthetic import SyntheticSAERunner, SyntheticSAERunnerConfig

    d_in = world.config.hidden_dim
    d_sae = int(options["expansion"]) * d_in
    extra: dict[str, Any] = {}
    if architecture == "matryoshka_batchtopk":  # the same nested widths as ours
        extra["matryoshka_widths"] = matryoshka_widths(d_sae)
    config_class = {
        "topk": TopKTrainingSAEConfig,
        "batchtopk": BatchTopKTrainingSAEConfig,
        "matryoshka_batchtopk": MatryoshkaBatchTopKTrainingSAEConfig,
    }[architecture]
    sae_config = config_class(
        d_in=d_in, d_sae=d_sae, k=int(options["k"]), device=options["device"], rescale_acts_by_decoder_norm=False,
        **extra,
    )  # fmt: skip
    samples = int(options["samples"])
    runner = SyntheticSAERunner(
        SyntheticSAERunnerConfig(
            synthetic_model=world.model.cfg, sae=sae_config, training_samples=samples,
            batch_size=int(options["batch_size"]), lr=float(options["lr"]), device=options["device"],
            autocast_sae=options["precision"] == "bfloat16", checkpoint_path=None, output_path=None,
            run_final_eval=False, eval_samples=0, logger=LoggingConfig(log_to_wandb=False),
        ),
        override_synthetic_model=world.model,
    )  # fmt: skip
    start = time.perf_counter()
    result = runner.run()
    seconds = time.perf_counter() - start
    return _as_saved(result.sae, options), samples / seconds


def _as_saved(training_sae, options: dict[str, Any]):
    """The runner's training SAE as sae-lens saves it for inference (BatchTopK kinds become JumpReLU with their
    learnt threshold), so both trainers are scored on what a user loads."""
    from sae_lens import SAE

    with tempfile.TemporaryDirectory() as folder:
        training_sae.save_inference_model(folder)
        return SAE.load_from_disk(folder, device=options["device"])


def _score(sae, world, options: dict[str, Any]) -> dict[str, float]:
    import torch
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(options["seed"]) + 12345)  # the same evaluation samples for every SAE
        result = eval_sae_on_synthetic_data(
            sae=sae.to("cpu"), feature_dict=world.model.feature_dict,
            activations_generator=world.generators["general"], num_samples=int(options["eval_samples"]),
            batch_size=4096,
        )  # fmt: skip
    return {"mcc": result.mcc, "f1": result.classification.f1_score, "l0": result.sae_l0}


def _study(world, loaded, options: dict[str, Any]) -> dict[str, float]:
    from compute.ml.synthetic import recovered
    from compute.ml.training import SAESpec, gsae_spec, run_training

    d_in, samples = world.config.hidden_dim, int(options["samples"])
    common = {"d_in": d_in, "total_tokens": samples, "device": options["device"],
              "minibatch_tokens": int(options["batch_size"]), "precision": options["precision"]}  # fmt: skip
    spec = gsae_spec(architecture="topk", d_in=d_in, expansion=int(options["expansion"]), k=int(options["k"]),
                     lr=float(options["lr"]))  # fmt: skip
    (gsae_trainer,), _ = run_training(batches=_batches(world, loaded, "general", samples, options), specs=[spec],
                                      **common)  # fmt: skip
    gsae = gsae_trainer.inference_sae()
    k = int(options["domain_k"])
    specs = [
        SAESpec("finetune", "finetune", "topk", gsae.cfg.d_sae, 1e-4, k=int(options["k"])),
        SAESpec("direct", "direct", "topk", 2 * d_in, float(options["lr"]), k=k),
        SAESpec("ssae", "ssae", "topk", 2 * d_in, float(options["lr"]), k=k),
    ]
    trainers, _ = run_training(batches=_batches(world, loaded, "domain", samples, options), specs=specs, gsae=gsae,
                               **common)  # fmt: skip
    domain = world.subsets()["domain"]
    decoders = {"gsae": gsae.W_dec, **{t.spec.key: t.inference_sae().W_dec for t in trainers}}
    return {
        f"{key}_domain_recall": float(recovered(decoder, world.directions)[domain].float().mean())
        for key, decoder in decoders.items()
    }


def run(**overrides: Any) -> dict[str, Any]:
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    options = {**DEFAULTS, **overrides}
    from compute.ml.synthetic import RECOVERY_THRESHOLD

    world, loaded = _world(options)
    architectures = [a for a in str(options["architectures"]).split(",") if a]
    out: dict[str, Any] = {"options": options, "recovery_threshold": RECOVERY_THRESHOLD, "architectures": {}}
    for architecture in architectures:
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "saelens": []}
        for _ in range(max(1, int(options["repeats"]))):  # interleaved: a burst of load hits one repeat
            sae, speed = _ours(world, loaded, architecture, options)
            runs["ours"].append({**_score(sae, world, options), "samples_per_s": speed})
            sae, speed = _saelens(world, architecture, options)
            runs["saelens"].append({**_score(sae, world, options), "samples_per_s": speed})
        figures: dict[str, float] = {}
        for who, points in runs.items():
            figures[f"mcc_{who}"] = statistics.median(p["mcc"] for p in points)
            figures[f"f1_{who}"] = statistics.median(p["f1"] for p in points)
            figures[f"l0_{who}"] = statistics.median(p["l0"] for p in points)
            figures[f"samples_per_s_{who}"] = max(p["samples_per_s"] for p in points)
        figures["mcc_over_saelens"] = figures["mcc_ours"] / figures["mcc_saelens"]
        figures["throughput_over_saelens"] = figures["samples_per_s_ours"] / figures["samples_per_s_saelens"]
        out["architectures"][architecture] = figures
    first = out["architectures"][architectures[0]]
    out.update({k: first[k] for k in ("mcc_ours", "mcc_saelens", "mcc_over_saelens", "f1_ours", "f1_saelens")})
    out.update({"throughput_ours": first["samples_per_s_ours"], "throughput_saelens": first["samples_per_s_saelens"]})
    out["headline_architecture"] = architectures[0]
    out.update(_study(world, loaded, options))
    return out
