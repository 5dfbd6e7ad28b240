"""The study's three figures, drawn with the product's one plotting approach (config.figures).

- `pareto`: fraction of the GSAE's loss gap recovered against L0 on D's held-out split, one curve per method;
- `rarity`: log10 firing frequency on the general corpus and on D, one histogram per method, dead features
  pinned at 1e-8 and counted in the legend, the resolution limit (one firing in the budget) drawn;
- `novelty`: max cosine similarity to the GSAE, decoder and encoder panels, alive features only, with the
  random-direction baseline.
Histograms show one SAE per method: the researcher's picks, else the healthy sweep points closest in L0 to each
other (`representatives`), named in the legend with their L0 and live features. Pareto points carry their sparsity
setting; points with a health flag are ringed in red.
On a synthetic world, `recovery` adds the domain true features each SAE recovers (decoder cosine at or above the
stated threshold) against L0, per method, with the number the GSAE misses.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from compute.ml.measures import log10_frequencies
from compute.models import StudyEvaluation
from compute.selectors.studies import evaluation_arrays, representatives
from config.figures import PALETTE, new_figure

FIGURES = {
    "pareto": "Loss recovered against L0",
    "rarity": "Feature rarity (log10 firing frequency)",
    "novelty": "Novelty (max cosine similarity to the GSAE)",
    "recovery": "Domain features recovered against L0 (synthetic world: against truth)",
}
METHOD_COLOURS = {"gsae": PALETTE[7], "finetune": PALETTE[0], "direct": PALETTE[1], "ssae": PALETTE[2]}
METHOD_NAMES = {"gsae": "GSAE", "finetune": "GSAE-finetune", "direct": "Direct SAE", "ssae": "SSAE"}


FLAG_COLOUR = "#c62828"


def study_figures_of(evaluation: StudyEvaluation) -> dict[str, str]:
    """The figures an evaluation has (name -> title): `recovery` only on a synthetic world."""
    return {name: title for name, title in FIGURES.items() if name != "recovery" or "truth" in evaluation.results}


def study_figure(evaluation: StudyEvaluation, name: str, *, picks: tuple[int, ...] = ()):
    """The named figure (`pareto`, `rarity`, `novelty`, `recovery`) of a stored evaluation; `picks` (SAE ids)
    choose the sweep points the histograms show (see `representatives`)."""
    if name not in study_figures_of(evaluation):
        raise KeyError(name)
    draw = {"pareto": _pareto, "rarity": _rarity, "novelty": _novelty, "recovery": _recovery}[name]
    return draw(evaluation.results, evaluation, picks)


def _label(row: dict[str, Any]) -> str:
    sparsity = f" ({row['sparsity']})" if row.get("sparsity") else ""
    l0 = f", L0 {row['l0']:.3g}" if row.get("l0") is not None else ""
    return f"{METHOD_NAMES.get(row['method'], row['method'])}{sparsity}{l0}"


def _pareto(results: dict[str, Any], evaluation: StudyEvaluation, picks: tuple[int, ...] = ()):
    fig, ax = new_figure(width=6.4, height=4.0)
    rows = results["rows"]
    flagged_label = "health flag (see the table)"
    for method in ("finetune", "direct", "ssae"):
        points = sorted(
            (r for r in rows if r["method"] == method and r["fraction_recovered"] is not None), key=lambda r: r["l0"]
        )
        if not points:
            continue
        xs, ys = [r["l0"] for r in points], [r["fraction_recovered"] for r in points]
        label = METHOD_NAMES[method] + (" (L0 = GSAE's + its own)" if method == "ssae" else "")
        ax.plot(xs, ys, marker="o", color=METHOD_COLOURS[method], label=label)
        for row in points:
            ax.annotate(
                row.get("sparsity") or "",
                (row["l0"], row["fraction_recovered"]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color=METHOD_COLOURS[method],
            )
            if row.get("health"):
                ax.plot(
                    [row["l0"]],
                    [row["fraction_recovered"]],
                    marker="o",
                    markersize=11,
                    markerfacecolor="none",
                    markeredgecolor=FLAG_COLOUR,
                    linestyle="none",
                    label=flagged_label,
                )
                flagged_label = "_nolegend_"
    gsae = next((r for r in rows if r["method"] == "gsae"), None)
    if gsae is not None:
        ax.axhline(0.0, color=METHOD_COLOURS["gsae"], linestyle="--", linewidth=1)
        ax.plot([gsae["l0"]], [0.0], marker="s", color=METHOD_COLOURS["gsae"], linestyle="none", label="GSAE")
    ax.set_xscale("log")
    ax.set_xlabel("L0 (active features per token, log scale)")
    explained = results.get("loss_kind") == "explained_variance"
    ax.set_ylabel(
        "fraction of the GSAE's squared error removed" if explained else "fraction of the GSAE's loss gap recovered"
    )
    domain = results["domain"]
    ax.set_title(f"Loss recovered on {domain['corpus']} (held-out, {domain['loss_tokens']:,} tokens)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig


def _rarity(results: dict[str, Any], evaluation: StudyEvaluation, picks: tuple[int, ...] = ()):
    fig, axes = new_figure(width=9.6, height=3.8, ncols=2)
    arrays = evaluation_arrays(evaluation)
    chosen = representatives(results["rows"], include_gsae=True, picks=picks)
    bins = np.arange(-8.25, 0.26, 0.25)
    for ax, (key, where) in zip(axes, (("freq_general", "general"), ("freq_domain", "domain")), strict=True):
        info = results[where]
        for row in chosen:
            freq = arrays.get(row["sae_id"], {}).get(key)
            if freq is None:
                continue
            dead = int((freq <= 0).sum())
            ax.hist(
                log10_frequencies(freq),
                bins=bins,
                histtype="step",
                linewidth=1.4,
                color=METHOD_COLOURS.get(row["method"]),
                label=f"{_label(row)}: {freq.size - dead:,} live, {dead:,} dead",
            )
        limit = math.log10(info["resolution"])
        ax.axvline(
            limit, color="#555555", linestyle=":", linewidth=1.2, label=f"resolution limit (1 in {info['tokens']:,})"
        )
        ax.axvline(-8, color="#999999", linestyle="-", linewidth=0.6)
        ax.set_xlabel("log10 firing frequency (fraction of tokens; dead at -8)")
        ax.set_ylabel("features")
        ax.set_title(
            f"on {info['corpus']} ({'general' if where == 'general' else 'domain D'}, {info['tokens']:,} tokens)",
            fontsize=10,
        )
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Feature rarity per method (SSAE: its own features)", fontsize=11)
    return fig


def _novelty(results: dict[str, Any], evaluation: StudyEvaluation, picks: tuple[int, ...] = ()):
    fig, axes = new_figure(width=9.6, height=3.8, ncols=2)
    arrays = evaluation_arrays(evaluation)
    baseline = evaluation_arrays(evaluation, baseline=True)
    chosen = representatives(results["rows"], include_gsae=False, picks=picks)
    bins = np.linspace(-0.2, 1.0, 49)
    for ax, part in zip(axes, ("decoder", "encoder"), strict=True):
        key = f"max_cos_{part}"
        base = baseline.get(key)
        if base is not None:
            ax.hist(
                base,
                bins=bins,
                density=True,
                color="#bbbbbb",
                alpha=0.6,
                label=f"random directions (median {np.median(base):.2f})",
            )
        for row in chosen:
            per_sae = arrays.get(row["sae_id"], {})
            values, freq = per_sae.get(key), per_sae.get("freq_domain")
            if values is None or freq is None:
                continue
            alive = freq > 0
            kept = values[alive]
            median = f"median {np.median(kept):.2f}" if kept.size else "none alive"
            ax.hist(
                kept,
                bins=bins,
                density=True,
                histtype="step",
                linewidth=1.4,
                color=METHOD_COLOURS.get(row["method"]),
                label=f"{_label(row)}: {int(alive.sum()):,} live, {median}",
            )
        ax.set_xlabel(f"max cosine similarity of {part} direction to the GSAE's")
        ax.set_ylabel("density (features)")
        ax.set_title(f"{part.capitalize()} directions", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(
        f"Novelty of domain features (alive on {results['domain']['corpus']}; dead = never fired there)", fontsize=11
    )
    return fig


def _recovery(results: dict[str, Any], evaluation: StudyEvaluation, picks: tuple[int, ...] = ()):
    fig, ax = new_figure(width=6.4, height=4.0)
    truth = results["truth"]
    for method in ("finetune", "direct", "ssae"):
        points = sorted((r["l0"], r["recovered_domain"]) for r in results["rows"] if r["method"] == method)
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        label = METHOD_NAMES[method] + (" (L0 = GSAE's + its own)" if method == "ssae" else "")
        ax.plot(xs, ys, marker="o", color=METHOD_COLOURS[method], label=label)
    gsae = next((r for r in results["rows"] if r["method"] == "gsae"), None)
    if gsae is not None:
        ax.plot([gsae["l0"]], [gsae["recovered_domain"]], marker="s", color=METHOD_COLOURS["gsae"], linestyle="none",
                label=f"GSAE (misses {truth['gsae_missed']:,})")  # fmt: skip
    total = truth["true_features"]["domain"]
    ax.axhline(total, color="0.5", linestyle=":", linewidth=1, label=f"all {total:,} domain features")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("L0 (active features per token, log scale)")
    ax.set_ylabel(f"domain features recovered (decoder cos >= {truth['threshold']:g})")
    ax.set_title("Recovery of the planted domain features", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return fig
