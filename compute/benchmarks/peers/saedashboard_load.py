"""Runs inside the SAEDashboard environment: load a Neuronpedia export with SAEDashboard's own data classes.

Usage: python saedashboard_load.py EXPORT.json  ->  prints the batch as SAEDashboard serialises it
(`NeuronpediaDashboardBatch(**data).to_dict()`), so the caller can compare it with what it wrote.
"""

import json
import sys

from sae_dashboard.neuronpedia.neuronpedia_dashboard import NeuronpediaDashboardBatch

with open(sys.argv[1], encoding="utf-8") as handle:
    data = json.load(handle)
batch = NeuronpediaDashboardBatch(**data)
assert len(batch.features) == len(data["features"])
print(json.dumps(batch.to_dict()))
