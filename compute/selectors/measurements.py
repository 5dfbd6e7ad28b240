"""Per-feature measurements of an SAE from its latest study evaluation, read with numpy (no torch).

The contract other apps code against: `feature_measurements(sae, feature_indices)` returns, for each
asked feature index, `{"freq_domain", "freq_general", "max_cos_decoder", "max_cos_encoder"}` (floats;
None where unknown: no study evaluated this SAE, or a GSAE has no max cosine to itself).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from compute.models import SAE, FeatureMeasurements
from config.storage import artifact_storage

KEYS = ("freq_domain", "freq_general", "max_cos_decoder", "max_cos_encoder")


def measurement_arrays(path: str) -> dict[str, np.ndarray]:
    """Every array of one stored `.npz` (float32 [d_sae] each)."""
    with artifact_storage().open(path, "rb") as handle, np.load(handle) as data:
        return {key: np.asarray(data[key]) for key in data.files}


def latest_measurements(sae: SAE | int) -> FeatureMeasurements | None:
    """The newest measurements of the SAE (a domain SAE's come with its max cosines to the GSAE)."""
    sae_id = sae.pk if isinstance(sae, SAE) else int(sae)
    return (
        FeatureMeasurements.objects.filter(sae_id=sae_id)
        .select_related("domain_corpus", "general_corpus")
        .order_by("-created_at", "-id")
        .first()
    )


def feature_measurements(sae: SAE | int, feature_indices: Iterable[int]) -> dict[int, dict[str, float | None]]:
    """{feature index: {"freq_domain", "freq_general", "max_cos_decoder", "max_cos_encoder"}}; None where
    unknown (also for an index outside the SAE)."""
    indices = [int(i) for i in feature_indices]
    record = latest_measurements(sae)
    arrays = measurement_arrays(record.path) if record is not None else {}
    out: dict[int, dict[str, float | None]] = {}
    for index in indices:
        out[index] = {
            key: float(arrays[key][index]) if key in arrays and 0 <= index < arrays[key].shape[0] else None
            for key in KEYS
        }
    return out
