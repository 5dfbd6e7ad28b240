"""The names a training run can be asked for. Imports nothing heavy, so the web process may use it too."""

from __future__ import annotations

METHODS = ("gsae", "finetune", "direct", "ssae")
DOMAIN_METHODS = ("finetune", "direct", "ssae")
ARCHITECTURES = ("standard", "topk")
PRECISIONS = ("auto", "float32", "bfloat16")  # of SAE training matmuls; see compute.ml.training.autocast_dtype
