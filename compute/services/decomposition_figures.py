"""Charts of decomposition probes, drawn with the one plotting approach (config.figures)."""

from __future__ import annotations

import statistics
import textwrap
from typing import TYPE_CHECKING, Any

from compute.ml.decomposition import CLASS_LABELS, CLASSES
from config.figures import PALETTE, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from compute.models import Decomposition


def decomposition_figure(decomposition: Decomposition) -> Figure:
    """A bar per sub-component (median phrase max), a dot per phrase, crosses for its near misses, the general
    controls' level and the activation threshold; all as fractions of the feature's corpus max."""
    m: dict[str, Any] = decomposition.measurement
    verdict = m["verdict"]
    components = m["components"]
    names = [c["name"] for c in components]
    fig, ax = new_figure(width=max(5.0, 1.2 * len(names) + 2.5), height=3.8)
    xs = list(range(len(names)))
    levels = [row["level"] for row in verdict["components"]]
    colors = [PALETTE[2] if row["activates"] else "#bbbbbb" for row in verdict["components"]]
    ax.bar(xs, levels, width=0.6, color=colors, label="sub-component (median of its phrases)", zorder=1)
    for x, component in zip(xs, components, strict=True):
        phrase_values = [p["rel_max"] for p in component["phrases"]]
        near_values = [p["rel_max"] for p in component["near_misses"]]
        ax.scatter([x - 0.12] * len(phrase_values), phrase_values, color=PALETTE[0], s=22, zorder=3,
                   label="phrase" if x == 0 else None)  # fmt: skip
        if near_values:
            ax.scatter([x + 0.12] * len(near_values), near_values, color=PALETTE[5], marker="x", s=26, zorder=3,
                       label="near-miss control" if x == 0 else None)  # fmt: skip
    threshold = verdict["thresholds"]["activation"]
    ax.axhline(threshold, color="#000000", linestyle="--", linewidth=1, label=f"threshold ({threshold:g} of max)")
    general = statistics.median([g["rel_max"] for g in m["general"]]) if m["general"] else 0.0
    ax.axhline(general, color=PALETTE[3], linestyle=":", linewidth=1.2, label="general controls (median)")
    ax.set_xticks(xs, _tick_labels(names))
    ax.set_xlabel("sub-component")
    ax.set_ylabel("max activation / corpus max (fraction)")
    ax.set_title(
        f"Feature {decomposition.feature_index}: {CLASS_LABELS[verdict['class']]} "
        f"({verdict['n_activating']} of {verdict['n_components']} activate)",
        fontsize=10,
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.85)
    return fig


def _tick_labels(names: list[str], width: int = 16) -> list[str]:
    """Labels centred under their bars, long ones wrapped (a rotated, right-aligned label sits beside its bar)."""
    return [textwrap.fill(name, width) for name in names]


def summary_figure(rows: list[dict[str, Any]]) -> Figure:
    """Grouped bars: per SAE, how many measured features fall in each class."""
    fig, ax = new_figure(width=max(5.0, 1.4 * len(rows) + 2.5), height=3.4)
    width = 0.8 / len(CLASSES)
    for k, cls in enumerate(CLASSES):
        xs = [i + (k - (len(CLASSES) - 1) / 2) * width for i in range(len(rows))]
        ax.bar(xs, [row["counts"][cls] for row in rows], width=width, color=PALETTE[[2, 1, 5][k]],
               label=CLASS_LABELS[cls])  # fmt: skip
    ax.set_xticks(range(len(rows)), _tick_labels([row["label"] for row in rows]))
    ax.set_xlabel("SAE")
    ax.set_ylabel("features (count)")
    ax.set_title("Decomposition classes of measured features", fontsize=10)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    return fig
