"""Blind panels: what a labeller sees of a feature, chosen per campaign so that it does not reveal the source.

A panel shows what a rater needs to explain a feature, and nothing that tells SAEs apart by itself:

- the same sections with the same number of context rows for every item (`SECTIONS`): the strongest
  activations, then weaker ones from across the feature's range;
- token highlighting by rank: a token's shade is its activation's rank among the activating tokens the panel
  shows (`rank_shading`), so the panel says which tokens fire more strongly than which, but not how the
  activations are distributed (how peaked a feature is tells SAEs apart: on general text the mean shade
  relative to the feature's max predicted Direct vs SSAE with AUC 0.88 in the demo). Shading relative to the
  feature's max is the "intensity" extra;
- no values: no frequency figure, density class, histogram, logit value or activation magnitude, unless an
  admin switched that extra on (`PANEL_EXTRAS`);
- contexts drawn per campaign: sampled from the feature's top and quantile pools with a generator seeded by
  the campaign (its seed and id), so the same feature in two campaigns does not render byte-identically;
- a feature with fewer activating contexts than rows is completed the same way for every source, with
  contexts where it does not fire (other features' contexts from the same corpus, drawn evenly from every
  source of the campaign, away from the feature's own firing positions), rendered like any other row.
  "Few examples" then shows only through the content the rater is meant to judge.

Dashboard rows (compute's DashboardSet / FeatureDashboard) are read in bulk, two queries per SAE and corpus;
this module renders, it never computes.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from html import escape
from typing import Any

from compute.ml.tokens import merge, merged_values, printable
from compute.selectors.dashboard_html import token_body_html
from labelsite.models import Campaign

# (heading, rows): identical for every item of every campaign.
SECTIONS: tuple[tuple[str, int], ...] = (("Strongest activations", 10), ("Weaker activations", 5))
FILLER_FEATURES_PER_SOURCE = 24  # other features per source whose contexts complete short panels


@dataclass(frozen=True)
class Context:
    """One context row: token strings, activations relative to the feature's max (0..1), and where it is."""

    tokens: list[str]
    relative: list[float]
    value: float  # the centre token's raw activation (shown only with the "magnitudes" extra)
    seq: int
    start: int  # position of the first token in its sequence


@dataclass
class FillerPool:
    """Contexts of other features on one corpus, drawn evenly from every source of a campaign."""

    contexts: list[tuple[list[str], int, int]] = field(default_factory=list)  # (tokens, seq, start)


def shade_class(rel: float) -> str:
    """The class of a token shaded at `rel` (0 < rel, relative to the feature's max): `hNN` is alpha 0.NN
    (0.08 to 0.85) in labelsite/static/labelsite/panels.css."""
    alpha = f"{0.08 + 0.77 * min(rel, 1.0):.2f}"  # "0.NN", rounded as the shade always was
    return "h" + alpha[2:]


def context_html(ctx: Context, *, magnitudes: bool) -> str:
    """One row: tokens shaded by their activation relative to the feature's max; values only with `magnitudes`.

    Markup is kept short (a row is most of a page's bytes): a token is a bare span, its shade a class. The
    tokens of one character are merged into it (`compute.ml.tokens`), shaded as the strongest of them."""
    parts = []
    pieces = merge(ctx.tokens)
    for piece, rel in zip(pieces, merged_values(pieces, ctx.relative), strict=True):
        body = token_body_html(piece.text)
        parts.append(f'<span class="{shade_class(rel)}">{body}</span>' if rel > 0 else f"<span>{body}</span>")
    value = f'<span class="val">{ctx.value:.3g}</span>' if magnitudes else ""
    return f'<li>{value}<span class="ctx">{"".join(parts)}</span></li>'


def _contexts(examples: Iterable[dict[str, Any]], strings: list[str], scale: float) -> list[Context]:
    out = []
    for ex in examples:
        if ex["x"] <= 0:
            continue
        rel = [max(0.0, v) / scale if scale > 0 else 0.0 for v in ex["v"]]
        out.append(
            Context(
                tokens=[strings[t] for t in ex["t"]],
                relative=rel,
                value=ex["x"],
                seq=ex["s"],
                start=ex["p"] - ex["c"],
            )
        )
    return out


def _overlaps(seq: int, start: int, length: int, firing: set[tuple[int, int]]) -> bool:
    return any((seq, p) in firing for p in range(start, start + length))


def choose_rows(
    *, top: Sequence[Context], spread: Sequence[Context], filler: FillerPool, rng: random.Random
) -> list[list[Context]]:
    """Rows of each section: sampled top contexts, then contexts from across the range, completed with fillers.

    The strongest section draws from the top pool; the weaker one from the quantile samples, then from the
    top contexts not shown; a section still short is completed with non-activating contexts (sorted last).
    """
    n_top, n_spread = (rows for _, rows in SECTIONS)
    strongest = rng.sample(list(top), min(n_top, len(top)))
    shown = {(c.seq, c.start) for c in strongest}
    spread_pool = [c for c in spread if (c.seq, c.start) not in shown]
    weaker = rng.sample(spread_pool, min(n_spread, len(spread_pool)))
    shown |= {(c.seq, c.start) for c in weaker}
    if len(weaker) < n_spread:
        rest = [c for c in top if (c.seq, c.start) not in shown]
        weaker += rng.sample(rest, min(n_spread - len(weaker), len(rest)))
    firing = {(c.seq, c.start + i) for c in [*top, *spread] for i, r in enumerate(c.relative) if r > 0}
    missing = n_top - len(strongest) + n_spread - len(weaker)
    fillers: list[Context] = []
    if missing:
        candidates = [f for f in filler.contexts if not _overlaps(f[1], f[2], len(f[0]), firing)]
        for tokens, seq, start in rng.sample(candidates, min(missing, len(candidates))):
            fillers.append(Context(tokens=tokens, relative=[0.0] * len(tokens), value=0.0, seq=seq, start=start))
    by_value = sorted(strongest, key=lambda c: -c.value)
    strongest = by_value + fillers[: n_top - len(by_value)]
    fillers = fillers[n_top - len(by_value) :]
    weaker = sorted(weaker, key=lambda c: -c.value) + fillers
    return [strongest, weaker]


def rank_shading(sections: Sequence[Sequence[Context]]) -> list[list[Context]]:
    """The rows with each activating token's shade replaced by its rank among the activating tokens shown.

    The strongest token gets 1, the weakest 1/n (ties share their mean rank); tokens that do not fire stay 0.
    Every panel with n activating tokens then shows the same shades, whatever the activations' distribution.
    """
    shown = sorted(r for rows in sections for c in rows for r in c.relative if r > 0)
    n = len(shown)

    def rank(r: float) -> float:  # mean of the 1-based ranks of the values equal to r, over n
        return (bisect_left(shown, r) + bisect_right(shown, r) + 1) / (2 * n)

    return [[replace(c, relative=[rank(r) if r > 0 else 0.0 for r in c.relative]) for c in rows] for rows in sections]


def _frequency_sentence(n_firing: int, n_tokens: int) -> str:
    percent = 100 * n_firing / n_tokens if n_tokens else 0.0
    return f"Fires on {n_firing:,} of {n_tokens:,} tokens ({percent:.3g}%)."


def _histogram_html(histogram: dict) -> str:
    counts, hi = histogram.get("counts") or [], histogram.get("hi", 0.0)
    if not any(counts):
        return '<p class="muted">No activations.</p>'
    top = max(counts)
    bars = "".join(
        f'<rect x="{3 * i}" y="{40 - 40 * c / top:.1f}" width="2" height="{40 * c / top:.1f}">'
        f"<title>{hi * i / len(counts):.3g}–{hi * (i + 1) / len(counts):.3g}: {c}</title></rect>"
        for i, c in enumerate(counts)
    )
    return f'<svg class="dash-hist" viewBox="0 0 {3 * len(counts)} 40" role="img" aria-label="activation histogram">{bars}</svg>'


def _logits_html(logits: dict) -> str:
    def column(title: str, rows: list) -> str:
        items = "".join(
            f'<li title="{value}">{escape(printable(token))} <span class="muted">{value}</span></li>'
            for token, value in rows
        )
        return f'<div><div class="muted">{title}</div><ol>{items}</ol></div>'

    return f'<div class="logits">{column("Promotes", logits.get("pos", []))}{column("Suppresses", logits.get("neg", []))}</div>'


@dataclass(frozen=True)
class PanelContent:
    """What one dashboard row says about a feature on one corpus: the content a panel is drawn from."""

    data: dict[str, Any]  # compute's packed format: strings, top, quantiles, histogram, logits
    n_firing: int
    n_tokens: int
    max_activation: float


def panel_html(*, content: PanelContent, extras: Sequence[str], filler: FillerPool, rng: random.Random) -> str:
    """One blind panel from one dashboard row's content."""
    data, n_firing, n_tokens, max_activation = content.data, content.n_firing, content.n_tokens, content.max_activation
    strings = data["strings"]
    top = _contexts(data["top"], strings, max_activation)
    spread = _contexts((ex for q in data["quantiles"] for ex in q["examples"]), strings, max_activation)
    sections = choose_rows(top=top, spread=spread, filler=filler, rng=rng)
    if "intensity" not in extras:
        sections = rank_shading(sections)
    magnitudes = "magnitudes" in extras
    parts = ['<div class="dash blind-panel">']
    if "frequency" in extras:
        rare = " rare" if n_firing < len(data["top"]) or n_firing < 20 else ""
        parts.append(f'<p class="freq{rare}">{_frequency_sentence(n_firing, n_tokens)}</p>')
    for (heading, _), rows in zip(SECTIONS, sections, strict=True):
        body = "".join(context_html(c, magnitudes=magnitudes) for c in rows)
        parts.append(f'<h3>{heading}</h3><ul class="examples">{body}</ul>')
    if "histogram" in extras:
        parts.append(f"<h3>Activation histogram</h3>{_histogram_html(data.get('histogram', {}))}")
    if "logits" in extras:
        parts.append(f"<h3>Output tokens</h3>{_logits_html(data.get('logits', {}))}")
    parts.append("</div>")
    return "".join(parts)


@dataclass(frozen=True)
class ItemRef:
    """Who an item is: its blind code, and its source and feature (which rendering must never read)."""

    code: str
    source_id: int
    sae_id: int
    feature_index: int


NO_DASHBOARD = '<div class="dash blind-panel"><p class="muted">No dashboard for this feature.</p></div>'


def item_panel(
    *, campaign: Campaign, item: ItemRef, kind: str, content: PanelContent | None, filler: FillerPool
) -> str:
    """An item's blind panel on one corpus: a function of the content, the campaign's settings and seed and the
    item's code only, never of its source or feature index (the swap test, labelsite.services.audit, proves it
    by rendering every item as if it came from each other source)."""
    if content is None:
        return NO_DASHBOARD
    rng = random.Random(f"panel:{campaign.seed}:{campaign.pk}:{item.code}:{kind}")
    return panel_html(content=content, extras=campaign.panel_extras, filler=filler, rng=rng)


def _ready_rows(*, sae_id: int, corpus_id: int, feature_indices: Iterable[int]):
    """(dashboard set, rows streamed) of some features of one SAE on one corpus; (None, []) until built."""
    from compute.models import DashboardSet

    dset = DashboardSet.objects.filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY).first()
    if dset is None:
        return None, iter(())
    return dset, dset.features.filter(feature_index__in=sorted(set(feature_indices))).iterator(chunk_size=200)


def filler_pool(*, campaign: Campaign, corpus_id: int) -> FillerPool:
    """Top contexts of FILLER_FEATURES_PER_SOURCE random features of every source (seeded by the campaign)."""
    rng = random.Random(f"filler:{campaign.seed}:{campaign.pk}:{corpus_id}")
    pool = FillerPool()
    for sae_id, d_sae in campaign.sources.order_by("pk").values_list("sae_id", "sae__d_sae"):
        indices = rng.sample(range(d_sae), min(FILLER_FEATURES_PER_SOURCE, d_sae))
        _, rows = _ready_rows(sae_id=sae_id, corpus_id=corpus_id, feature_indices=indices)
        for row in rows:
            data = row.data
            strings = data["strings"]
            pool.contexts += [([strings[t] for t in ex["t"]], ex["s"], ex["p"] - ex["c"]) for ex in data["top"]]
    return pool


def panel_contents(
    *, sae_id: int, corpus_id: int, features: Iterable[int]
) -> Iterator[tuple[int, PanelContent | None]]:
    """(feature index, its content or None) for features of one SAE on one corpus; two queries, rows streamed."""
    wanted = set(features)
    dset, rows = _ready_rows(sae_id=sae_id, corpus_id=corpus_id, feature_indices=wanted)
    for row in rows:
        wanted.discard(row.feature_index)
        yield (
            row.feature_index,
            PanelContent(
                data=row.data, n_firing=row.n_firing, n_tokens=dset.n_tokens, max_activation=row.max_activation
            ),
        )
    for index in sorted(wanted):
        yield index, None
