"""Dashboard export formats: our JSON (one feature, token strings spelled out), JSON Lines for a whole set,
and a whole set as one Neuronpedia batch document; sets are streamed one feature at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from compute.ml.tokens import merge, merged_values, piece_index, printable
from compute.models import DashboardSet, FeatureDashboard
from compute.selectors.dashboard_html import printable_logits

EXPORT_FORMAT = "labelsite-dashboard/1"


def _expand(example: dict[str, Any], strings: list[str]) -> dict[str, Any]:
    """An example with its tokens spelled out, the tokens of one character merged into it (its value the
    largest of theirs), so that every string is whole text."""
    pieces = merge([strings[i] for i in example["t"]])
    return {
        "tokens": [printable(p.text) for p in pieces],
        "values": merged_values(pieces, example["v"]),
        "max_index": piece_index(pieces, example["c"]),
        "max_value": example["x"],
        "sequence": example["s"],
        "position": example["p"],
    }


def dashboard_export(*, dset: DashboardSet, row: FeatureDashboard) -> dict[str, Any]:
    """Our JSON format: one feature's dashboard with token strings spelled out."""
    data = row.data
    strings = data["strings"]
    return {
        "format": EXPORT_FORMAT,
        "sae": {"id": dset.sae_id, "name": dset.sae.name, "hook_name": dset.sae.hook_name, "d_sae": dset.sae.d_sae},
        "corpus": {"id": dset.corpus_id, "name": dset.corpus.name, "kind": dset.corpus.kind},
        "config": dset.config,
        "feature_index": row.feature_index,
        "n_tokens": dset.n_tokens,
        "n_firing": row.n_firing,
        "frequency": row.frequency,
        "max_activation": row.max_activation,
        "mean_activation": data["mean"],
        "histogram": data["histogram"],
        "top_examples": [_expand(ex, strings) for ex in data["top"]],
        "quantiles": [
            {**{k: q[k] for k in ("lo", "hi", "count")}, "examples": [_expand(ex, strings) for ex in q["examples"]]}
            for q in data["quantiles"]
        ],
        "logits": {side: printable_logits(rows) for side, rows in data["logits"].items()},
    }


def dashboard_set_exports(*, dset: DashboardSet) -> Iterator[dict[str, Any]]:
    """Our export of every feature of a set, one at a time (memory stays flat for wide SAEs)."""
    for row in dset.features.order_by("feature_index").iterator(chunk_size=200):
        yield dashboard_export(dset=dset, row=row)


def dashboard_set_export_lines(*, dset: DashboardSet) -> Iterator[str]:
    """JSON Lines for a whole set."""
    for export in dashboard_set_exports(dset=dset):
        yield json.dumps(export) + "\n"


def neuronpedia_set_lines(*, dset: DashboardSet) -> Iterator[str]:
    """The whole set as one Neuronpedia batch document (compute.services.neuronpedia), streamed."""
    from compute.ml.choices import hook_layer
    from compute.services.neuronpedia import neuronpedia_batch_header, neuronpedia_batch_lines

    sae = dset.sae
    header = neuronpedia_batch_header(
        model_id=sae.language_model.name, layer=hook_layer(sae.hook_name) or 0, sae_set=sae.name
    )
    return neuronpedia_batch_lines(header, dashboard_set_exports(dset=dset))
