"""Dashboards as Neuronpedia's feature-import JSON (the batch format SAEDashboard's NeuronpediaRunner writes).

Field names and meanings follow SAEDashboard's `NeuronpediaDashboardBatch` / `NeuronpediaDashboardFeature` /
`NeuronpediaDashboardActivation` (sae_dashboard/neuronpedia/neuronpedia_dashboard.py), which Neuronpedia
imports: top activations have `bin_min = -1`, `bin_max` = the feature's max, `bin_contains = -1`; a quantile
interval has its activation range and the share of firing tokens it holds; `frac_nonzero` is the firing
frequency; `freq_hist_data_bar_values/heights` are the activation histogram's bin centres and counts; logit
lists are the decoder direction's top and bottom output tokens. Fields we do not compute (neuron alignment,
correlations, logit histogram, decoder-by-head weights) are present and empty, as SAEDashboard writes them when
disabled. Built from our own export (`dashboard_export`), one feature at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

NEURONPEDIA_EMPTY_LISTS = (
    "neuron_alignment_indices",
    "neuron_alignment_values",
    "neuron_alignment_l1",
    "correlated_neurons_indices",
    "correlated_neurons_l1",
    "correlated_neurons_pearson",
    "correlated_features_indices",
    "correlated_features_l1",
    "correlated_features_pearson",
    "logits_hist_data_bar_heights",
    "logits_hist_data_bar_values",
    "decoder_weights_dist",
    "vector",
)


def _activation(example: dict[str, Any], *, bin_min: float, bin_max: float, bin_contains: float) -> dict[str, Any]:
    return {
        "bin_min": float(bin_min),
        "bin_max": float(bin_max),
        "bin_contains": float(bin_contains),
        "tokens": list(example["tokens"]),
        "values": [float(v) for v in example["values"]],
        "qualifying_token_index": int(example["max_index"]),
    }


def neuronpedia_feature(export: dict[str, Any]) -> dict[str, Any]:
    """One feature of our export (compute.selectors.dashboard_exports.dashboard_export) in Neuronpedia's shape."""
    max_value = float(export["max_activation"])
    n_firing = max(int(export["n_firing"]), 0)
    activations = [_activation(ex, bin_min=-1, bin_max=max_value, bin_contains=-1) for ex in export["top_examples"]]
    for q in export["quantiles"]:
        share = q["count"] / n_firing if n_firing else 0.0
        activations += [_activation(ex, bin_min=q["lo"], bin_max=q["hi"], bin_contains=share) for ex in q["examples"]]
    histogram = export["histogram"] or {}
    counts = list(histogram.get("counts") or [])
    lo, hi = float(histogram.get("lo", 0.0)), float(histogram.get("hi", 0.0))
    width = (hi - lo) / len(counts) if counts else 0.0
    logits = export["logits"] or {}
    feature: dict[str, Any] = {name: [] for name in NEURONPEDIA_EMPTY_LISTS}
    feature.update(
        {
            "feature_index": int(export["feature_index"]),
            "neg_str": [token for token, _ in logits.get("neg", [])],
            "neg_values": [float(v) for _, v in logits.get("neg", [])],
            "pos_str": [token for token, _ in logits.get("pos", [])],
            "pos_values": [float(v) for _, v in logits.get("pos", [])],
            "frac_nonzero": float(export["frequency"]),
            "freq_hist_data_bar_values": [round(lo + (i + 0.5) * width, 6) for i in range(len(counts))],
            "freq_hist_data_bar_heights": [float(c) for c in counts],
            "n_prompts_total": int(export.get("n_windows") or 0),
            "n_tokens_in_prompt": int((export.get("config") or {}).get("context_size") or 0),
            "dataset": export["corpus"]["name"],
            "activations": activations,
        }
    )
    return feature


def neuronpedia_batch_header(*, model_id: str, layer: int, sae_set: str) -> dict[str, Any]:
    """The batch fields around the features (Neuronpedia identifies an SAE as model / layer-set)."""
    return {"model_id": model_id, "layer": int(layer), "sae_set": sae_set, "sae_id_suffix": None}


def neuronpedia_batch_lines(header: dict[str, Any], exports: Iterator[dict[str, Any]]) -> Iterator[str]:
    """The whole batch as one JSON document, streamed feature by feature (memory stays flat for wide SAEs)."""
    opening = json.dumps({**header, "features": []})
    yield opening[:-2]  # everything up to the features list's closing "]}"
    for i, export in enumerate(exports):
        yield ("," if i else "") + json.dumps(neuronpedia_feature(export))
    yield "]}\n"
