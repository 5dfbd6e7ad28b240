"""Our Neuronpedia export, loaded by a real client: SAEDashboard's own data classes (`sae-dashboard` 0.8, in
an environment of its own because it pins transformer-lens < 3), which serialise it back unchanged."""

from __future__ import annotations

import json

import pytest

from compute.benchmarks.peers import run_peer_script
from compute.services.neuronpedia import neuronpedia_batch_header, neuronpedia_batch_lines


def _export(index: int) -> dict:
    """A feature in our export format, with top examples, two quantile bins, a histogram and logits."""
    example = {"tokens": ["The", " moon", " is"], "values": [0.0, 2.5, 0.25], "max_index": 1, "max_value": 2.5}
    return {
        "feature_index": index,
        "n_firing": 40,
        "frequency": 40 / 8192,
        "max_activation": 2.5,
        "histogram": {"lo": 0.0, "hi": 2.5, "counts": [30, 8, 2]},
        "top_examples": [example, {**example, "values": [0.0, 2.0, 0.5]}],
        "quantiles": [
            {"lo": 0.0, "hi": 1.25, "count": 30, "examples": [example]},
            {"lo": 1.25, "hi": 2.5, "count": 10, "examples": [example]},
        ],
        "logits": {"pos": [[" crater", 1.5], [" orbit", 1.25]], "neg": [[" the", -0.75]]},
        "corpus": {"name": "science"},
        "config": {"context_size": 33},
    }


@pytest.mark.timeout(1800)
def test_neuronpedia_export_loads_in_saedashboard_data_classes(tmp_path):
    header = neuronpedia_batch_header(model_id="smollm2-135m-instruct", layer=15, sae_set="ssae-l1=1")
    text = "".join(neuronpedia_batch_lines(header, iter([_export(0), _export(7)])))
    path = tmp_path / "batch.json"
    path.write_text(text)
    written = json.loads(text)
    loaded = json.loads(run_peer_script("sae-dashboard", "saedashboard_load.py", str(path)))
    assert loaded == written  # every field we write is one SAEDashboard knows, with the type it expects
    feature = loaded["features"][1]
    assert feature["feature_index"] == 7 and feature["frac_nonzero"] == pytest.approx(40 / 8192)
    assert [a["bin_min"] for a in feature["activations"]] == [-1, -1, 0.0, 1.25]
    assert [a["bin_contains"] for a in feature["activations"]] == [-1, -1, 0.75, 0.25]
    assert feature["freq_hist_data_bar_values"] == pytest.approx([5 / 12, 15 / 12, 25 / 12])
