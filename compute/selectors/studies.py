"""Reads behind the study pages: the evaluation to show, its table, its per-feature arrays (numpy only)."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from compute.models import Study, StudyEvaluation
from compute.selectors.measurements import measurement_arrays

# The table's columns: (key in a row, heading naming its corpus and unit where it has one).
TABLE_COLUMNS: list[tuple[str, str]] = [
    ("name", "SAE"),
    ("method_label", "method"),
    ("sparsity", "sparsity"),
    ("flags", "health flags"),
    ("d_sae", "features"),
    ("l0", "L0 on D (SSAE: incl. GSAE)"),
    ("l0_own", "own L0 on D"),
    ("fvu", "FVU on D"),
    ("mse", "MSE on D"),
    ("loss", "CE loss on D (nats/token)"),
    ("fraction_recovered", "fraction of GSAE gap recovered"),
    ("fraction_vs_zero", "loss recovered vs zero ablation"),
    ("dead_domain", "dead on D"),
    ("dead_general", "dead on general"),
    ("median_log10_freq_domain", "median log10 freq on D (alive)"),
    ("median_log10_freq_general", "median log10 freq on general (alive)"),
    ("median_max_cos_decoder", "median max cos decoder (alive)"),
    ("median_max_cos_encoder", "median max cos encoder (alive)"),
]

# On a synthetic world, the SAEs against the true features (compute.ml.synthetic.StudyTruth): decoder cosine
# figures per subset of true features, firing figures on the held-out domain tokens.
TRUTH_COLUMNS: list[tuple[str, str]] = [
    *(
        (f"{name}_{subset}", f"{heading} ({subset} true features)")
        for subset in ("all", "domain", "general")
        for name, heading in (("mcc", "MCC"), ("uniqueness", "uniqueness"), ("f1", "F1"), ("recovered", "recovered"))
    ),
    ("gsae_missed_recovered", "domain features the GSAE misses, recovered"),
]
# Where the world has no next-token loss, the loss columns hold squared errors (see compute.ml.study).
EXPLAINED_VARIANCE_HEADINGS = {
    "loss": "squared error on D (per token)",
    "fraction_recovered": "fraction of GSAE squared error removed",
    "fraction_vs_zero": "explained variance (no LM loss in a synthetic world)",
}


def table_columns(evaluation: StudyEvaluation) -> list[tuple[str, str]]:
    """The columns of this evaluation: the study's, renamed where a synthetic world has no loss, and its truth."""
    results = evaluation.results
    if results.get("loss_kind") != "explained_variance":
        return TABLE_COLUMNS
    renamed = [(key, EXPLAINED_VARIANCE_HEADINGS.get(key, heading)) for key, heading in TABLE_COLUMNS]
    return renamed + (TRUTH_COLUMNS if "truth" in results else [])


def study_latest_evaluation(study: Study) -> StudyEvaluation | None:
    return study.evaluations.select_related("job").first()


def evaluation_arrays(evaluation: StudyEvaluation, *, baseline: bool = False) -> dict:
    """Per SAE id the stored per-feature arrays; with baseline=True the random-direction baseline's arrays."""
    if baseline:
        path = (evaluation.results.get("baseline") or {}).get("path")
        return measurement_arrays(path) if path else {}
    return {m.sae_id: measurement_arrays(m.path) for m in evaluation.measurements.all()}


def representatives(
    rows: list[dict[str, Any]], *, include_gsae: bool, picks: Iterable[int] = ()
) -> list[dict[str, Any]]:
    """One SAE per method for the histograms (the GSAE as itself).

    A method's SAE among `picks` (SAE ids) is shown; for the other methods, the sweep points closest in L0 to each
    other (the smallest spread of log L0 over the methods, picks included), among each method's healthy points
    (no health flag) where it has any.
    """
    picked = set(picks)
    candidates: dict[str, list[dict[str, Any]]] = {}
    for method in ("finetune", "direct", "ssae"):
        members = [r for r in rows if r["method"] == method and r.get("l0")]
        chosen = [r for r in members if r["sae_id"] in picked][:1]
        healthy = [r for r in members if not r.get("health")]
        if members:
            candidates[method] = chosen or healthy or members
    best: tuple[dict[str, Any], ...] = ()
    if candidates:
        best = min(
            itertools.product(*candidates.values()),
            key=lambda combo: np.ptp([math.log(r["l0"]) for r in combo]),
        )
    gsae = [r for r in rows if r["method"] == "gsae"] if include_gsae else []
    return gsae[:1] + list(best)


def evaluation_table(evaluation: StudyEvaluation) -> tuple[list[str], list[list[Any]]]:
    """Headings and rows of every number of the evaluation."""
    columns = table_columns(evaluation)
    headings = [heading for _, heading in columns]
    rows = [[row.get(key) for key, _ in columns] for row in evaluation.results.get("rows", [])]
    return headings, rows


def evaluation_csv(evaluation: StudyEvaluation) -> str:
    """The table as CSV, with the shared figures (clean / zero-ablation / GSAE losses, corpora) per row."""
    results = evaluation.results
    shared = {
        "domain_corpus": results["domain"]["corpus"],
        "domain_tokens": results["domain"]["tokens"],
        "general_corpus": results["general"]["corpus"],
        "general_tokens": results["general"]["tokens"],
        "clean_loss": results["losses"]["clean"],
        "zero_ablation_loss": results["losses"]["zero_ablation"],
        "gsae_loss": results["losses"]["gsae"],
        "loss_kind": results.get("loss_kind", "cross_entropy"),
    }
    keys = [key for key, _ in table_columns(evaluation)] + ["sae_id", "method", "includes_gsae"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys + list(shared), extrasaction="ignore")
    writer.writeheader()
    for row in results.get("rows", []):
        writer.writerow({**row, **shared})
    return buffer.getvalue()


def evaluation_export(evaluation: StudyEvaluation, *, per_feature: bool = False) -> dict[str, Any]:
    """Everything stored about the evaluation as JSON-ready data (per-feature arrays on request)."""
    study = evaluation.study
    out: dict[str, Any] = {
        "study": study.name,
        "evaluation": evaluation.pk,
        "created_at": evaluation.created_at.isoformat(),
        "fingerprint": evaluation.fingerprint,
        **evaluation.results,
    }
    if per_feature:
        arrays = evaluation_arrays(evaluation)
        out["per_feature"] = {
            str(sae_id): {k: [None if np.isnan(v) else float(v) for v in a] for k, a in per_sae.items()}
            for sae_id, per_sae in arrays.items()
        }
    return out
