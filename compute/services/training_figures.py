"""Training figures (config.figures): loss, FVU and L0 over training, recorded during training (an SAE's
page) or reported live (a training job's page); and a sweep's L0 against FVU."""

from __future__ import annotations

from typing import Any

from config.figures import new_figure

PANELS = (("fvu", "FVU (fraction of variance unexplained)", "log"), ("l0", "L0 (active features per token)", "linear"),
          ("loss", "training loss (scaled units)", "log"))  # fmt: skip


def training_curve_figure(curves: dict[str, list[dict[str, Any]]], *, title: str):
    """One line per SAE key in each panel, against training tokens."""
    fig, axes = new_figure(width=10.0, height=3.2, ncols=3)
    for ax, (key, label, scale) in zip(axes, PANELS, strict=True):
        for name, points in curves.items():
            xy = [(p["tokens"], p[key]) for p in points if p.get(key) is not None and p.get("tokens") is not None]
            if xy:
                xs, ys = zip(*xy, strict=True)
                ax.plot(xs, ys, linewidth=1.2, label=name)
        positive = all(p.get(key) is None or p[key] > 0 for points in curves.values() for p in points)
        ax.set_yscale(scale if positive else "linear")
        ax.set_xlabel("training tokens")
        ax.set_ylabel(label)
        ax.legend(fontsize=6, loc="best")
    fig.suptitle(title, fontsize=11)
    return fig


def sweep_figure(points: list[tuple[str, float, float]], *, corpus: str):
    """L0 against FVU for the SAEs of one sweep: points are (label, l0, fvu)."""
    fig, ax = new_figure(width=5.6, height=3.6)
    for label, l0, fvu in sorted(points, key=lambda p: p[1]):
        ax.plot([l0], [fvu], marker="o", linestyle="none", label=label)
    ax.set_xlabel("L0 (active features per token)")
    ax.set_ylabel("FVU")
    ax.set_title(f"Sweep on the eval split of {corpus}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    return fig
