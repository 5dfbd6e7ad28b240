"""Charts of a campaign's results (built from `campaign_results`), drawn with config.figures.

Each builder takes the results dict and returns a matplotlib Figure, or None when there is nothing to draw.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np

from config.figures import PALETTE, new_figure


def _sources(results: dict) -> list[str]:
    return [s["label"] for s in results["sources"]]


def _prompt(question: dict, width: int = 28) -> str:
    """A question as people read it (its prompt, wrapped), never its key."""
    return textwrap.fill(question.get("prompt") or question["key"], width)


def _legend_below(ax, columns: int) -> None:
    """The legend under the axes, where it hides no bar, interval or point."""
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=max(1, columns), frameon=False)


def _bars_with_intervals(ax, sources: list[str], groups: list[dict], estimate: Callable, scale: float = 1.0) -> float:
    """Grouped bars, one group per item of `groups` (labelled by its prompt) and one bar per source, with the
    estimate's 95% interval as error bars; `estimate(group, source)` gives {"mean", "low", "high"} (None = unknown).
    Returns the highest point drawn (an interval's top included), so the caller's axis limits clip nothing."""
    width = 0.8 / max(len(sources), 1)
    x = np.arange(len(groups))
    top = 0.0
    for i, label in enumerate(sources):
        means, lows, highs = [], [], []
        for group in groups:
            est = estimate(group, label)
            mean = scale * est["mean"] if est["mean"] is not None else np.nan
            means.append(mean)
            lows.append(mean - scale * est["low"] if est["low"] is not None else 0.0)
            highs.append(scale * est["high"] - mean if est["high"] is not None else 0.0)
            top = max(top, np.nan_to_num(mean) + highs[-1])
        ax.bar(x + (i - (len(sources) - 1) / 2) * width, means, width, yerr=[lows, highs], capsize=3, label=label)
    ax.set_xticks(x, [_prompt(g) for g in groups], fontsize="small")
    return float(top)


def means_figure(results: dict):
    """Mean score per question and source, with the bootstrap 95% interval as error bars."""
    sections = results["scores"]
    if not sections:
        return None
    sources = _sources(results)
    fig, ax = new_figure(width=6.4, height=4.4)
    drawn = _bars_with_intervals(ax, sources, sections, lambda section, label: section["per_source"][label]["estimate"])
    top = max((lv["score"] for s in sections for lv in s["levels"]), default=1)
    ax.set_ylim(0, max(top, drawn) * 1.05)
    ax.set_ylabel("mean score (rubric points)")
    ax.set_title("Mean score per source, 95% bootstrap interval")
    _legend_below(ax, len(sources))
    return fig


def breakdown_figure(results: dict):
    """The detailed score breakdown: share of judgments at each rubric level, per source and question."""
    sections = results["scores"]
    if not sections:
        return None
    sources = _sources(results)
    fig, axes = new_figure(width=4.2 * len(sections), height=3.6, ncols=len(sections))
    axes = np.atleast_1d(axes)
    width = 0.8 / max(len(sources), 1)
    for ax, section in zip(axes, sections, strict=True):
        levels = [str(lv["score"]) for lv in section["levels"]]
        x = np.arange(len(levels))
        for i, label in enumerate(sources):
            dist = section["per_source"][label]["distribution"]
            shares = [100 * (dist[level]["share"] or 0.0) for level in levels]
            ax.bar(
                x + (i - (len(sources) - 1) / 2) * width, shares, width, label=label, color=PALETTE[i % len(PALETTE)]
            )
        ax.set_xticks(x, levels)
        ax.set_xlabel("rubric score")
        ax.set_ylabel("judgments (%)")
        ax.set_title(_prompt(section, 40), fontsize="medium")
        _legend_below(ax, len(sources))
    return fig


def flags_figure(results: dict):
    """Share of judgments answering yes (e.g. "nice") per source, with its interval."""
    flags = results["flags"]
    if not flags:
        return None
    sources = _sources(results)
    fig, ax = new_figure(width=6.4, height=4.0)
    drawn = _bars_with_intervals(ax, sources, flags, lambda flag, label: flag["per_source"][label]["share"], scale=100)
    ax.set_ylim(0, max(100.0, drawn) * 1.05)
    ax.set_ylabel("judgments answering yes (%)")
    ax.set_title("Yes answers per source, 95% bootstrap interval")
    _legend_below(ax, len(sources))
    return fig


def measured_figure(results: dict):
    """Measured vs rated: each judged feature's log-odds of firing on D vs general text against its mean
    human score, one colour per source, Spearman's rho in the legend."""
    sections = results["scores"]
    features = results["measured"]["features"]
    if not sections or not any(f["log_odds"] is not None for f in features):
        return None
    sources = _sources(results)
    rho = {(c["source"], c["question"]): c for c in results["measured"]["spearman"] if c["measure"] == "log_odds"}
    fig, axes = new_figure(width=4.2 * len(sections), height=3.6, ncols=len(sections))
    axes = np.atleast_1d(axes)
    for ax, section in zip(axes, sections, strict=True):
        key = section["key"]
        for i, label in enumerate(sources):
            pts = [(f["log_odds"], f[key]) for f in features if f["source"] == label]
            pts = [(x, y) for x, y in pts if x is not None and y is not None]
            legend = _rho_legend(label, rho.get((label, key)), len(pts), results["min_features"])
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.scatter(xs, ys, s=14, alpha=0.7, label=legend, color=PALETTE[i % len(PALETTE)])
        ax.set_xlabel("log-odds of firing, domain vs general (nats)")
        ax.set_ylabel("mean score (rubric points)")
        ax.set_title(_prompt(section, 40), fontsize="medium")
        _legend_below(ax, 1)
    return fig


def _rho_legend(label: str, correlation: dict | None, n_points: int, minimum: int) -> str:
    """A source's legend entry: its number of features and Spearman's rho, withheld below `minimum` features."""
    if correlation is None or correlation["rho"] is None:
        return f"{label} (n = {n_points}, ρ n/a)"
    if correlation["n"] < minimum:
        return f"{label} (n = {correlation['n']} < {minimum}: ρ withheld)"
    return f"{label} (n = {correlation['n']}, ρ = {correlation['rho']:.2f})"


def labellers_figure(results: dict):
    """Each labeller's mean score per question, to spot a rater who scores differently."""
    rows = results["per_labeller"]
    sections = results["scores"]
    if not rows or not sections:
        return None
    fig, ax = new_figure(width=6.4, height=max(2.4, 0.35 * len(rows) + 1.2))
    y = np.arange(len(rows))
    for i, section in enumerate(sections):
        means = [r["questions"][section["key"]]["mean"] for r in rows]
        ax.scatter(
            [m if m is not None else np.nan for m in means],
            y,
            label=_prompt(section, 40),
            color=PALETTE[i % len(PALETTE)],
        )
    ax.set_yticks(y, [r["labeller"] for r in rows])
    ax.set_xlabel("mean score (rubric points)")
    ax.set_ylabel("labeller")
    ax.set_title("Mean score per labeller")
    _legend_below(ax, 1)
    return fig


FIGURES: dict[str, tuple[str, Callable]] = {
    "means": ("Mean score per source", means_figure),
    "breakdown": ("Detailed score breakdown", breakdown_figure),
    "flags": ("Yes/no answers per source", flags_figure),
    "measured": ("Measured vs rated", measured_figure),
    "labellers": ("Per-labeller means", labellers_figure),
}
