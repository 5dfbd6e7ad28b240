"""The admin feature dashboard's activation histogram (config.figures), with axes and a log option."""

from __future__ import annotations

from config.figures import PALETTE, new_figure


def activation_histogram_figure(counts: list[int], hi: float, *, log: bool, corpus: str):
    """Counts of firing tokens in equal bins over (0, hi]."""
    fig, ax = new_figure(width=5.2, height=2.8)
    n = len(counts)
    edges = [hi * i / n for i in range(n + 1)]
    ax.stairs(counts, edges, fill=True, color=PALETTE[1], label=f"tokens where the feature fires ({sum(counts):,})")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("activation value")
    ax.set_ylabel("tokens" + (" (log scale)" if log else ""))
    ax.set_title(f"Activation histogram on {corpus}", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return fig
