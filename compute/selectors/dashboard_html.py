"""Rendering one feature's dashboard as an HTML partial (admin view, or blind for labellers).

The page structure, the histogram and the logit tables are the template `compute/_dashboard.html`. Token
runs (up to ~2,000 highlighted tokens per dashboard) are the one piece built here: a Django template loop
over that many tokens takes several times the 100 ms a dashboard may take to render, so each token becomes
one escaped `<span>` in `_token_html`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from html import escape
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from compute.ml.tokens import is_stray, merge, merged_values, printable, stray_byte
from compute.models import DashboardSet, FeatureDashboard
from compute.selectors.dashboards import ready_set

TEMPLATE = "compute/_dashboard.html"
HISTOGRAM_WIDTH, HISTOGRAM_HEIGHT = 300, 60
_WS = {"\n": "↵", "\t": "⇥", "\r": ""}


def dashboard_html(*, sae_id: int, corpus_id: int, feature_index: int, blind: bool) -> str:
    """The dashboard partial of one feature on one corpus; blind leaves out everything identifying."""
    ((_, html),) = dashboards_html(sae_id=sae_id, corpus_id=corpus_id, feature_indices=[feature_index], blind=blind)
    return html


def dashboards_html(
    *, sae_id: int, corpus_id: int, feature_indices: Iterable[int], blind: bool
) -> Iterator[tuple[int, str]]:
    """(feature index, dashboard partial) for many features of one SAE on one corpus.

    Two queries whatever the number of features (the set, then its rows streamed), so memory stays bounded.
    """
    wanted = set(feature_indices)
    dset = ready_set(sae_id=sae_id, corpus_id=corpus_id)
    if dset is None:
        missing = render_to_string(TEMPLATE, {"missing": "Dashboards for this corpus are not built yet."})
        yield from ((i, missing) for i in sorted(wanted))
        return
    for row in dset.features.filter(feature_index__in=sorted(wanted)).iterator(chunk_size=200):
        wanted.discard(row.feature_index)
        yield row.feature_index, render_to_string(TEMPLATE, dashboard_context(dset=dset, row=row, blind=blind))
    for i in sorted(wanted):
        yield i, render_to_string(TEMPLATE, {"missing": f"No feature {i} in this SAE."})


def _count(n: int) -> str:
    """1234567 -> '1.2M' (plain numbers read faster than digits in a sentence)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def _num(value: float) -> str:
    return f"{value:.3g}"


def _is_special(text: str) -> bool:
    """Special tokens (BOS, document separators, padding) look like markup: show them faintly."""
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<s>", "</s>", "<pad>", "<bos>", "<eos>")


def char_html(ch: str) -> str:
    """Whitespace as faint symbols; other control characters (NUL too) and bytes left over from a character
    cut by the window's edge (`compute.ml.tokens`) as faint escapes, never raw."""
    if ch in _WS:
        return f'<span class="ws">{_WS[ch]}</span>' if _WS[ch] else ""
    if is_stray(ch):
        return f'<span class="ws">\\x{stray_byte(ch):02x}</span>'
    if not ch.isprintable() and ch != " ":
        return f'<span class="ws">\\x{ord(ch):02x}</span>'
    return escape(ch)


def token_body_html(text: str) -> str:
    """A token's (or a merged character's) text as HTML: special tokens faint, an empty token as ∅."""
    if _is_special(text):
        return f'<span class="ws">{escape(text)}</span>'
    return "".join(char_html(ch) for ch in text) or '<span class="ws">∅</span>'


def _token_html(text: str, value: float, scale: float, is_max: bool) -> str:
    body = token_body_html(text)
    title = escape(repr(printable(text)))
    if value > 0:
        alpha = min(1.0, value / scale) if scale > 0 else 0.0
        cls = "tok max" if is_max else "tok"
        return (
            f'<span class="{cls}" style="background:rgba(255,120,0,{0.08 + 0.77 * alpha:.2f})" '
            f'title="{title}: {value:.3g}">{body}</span>'
        )
    return f'<span class="tok" title="{title}: 0">{body}</span>'


def _run_html(tokens: list[str], values: list[float], scale: float, marked: int) -> str:
    """Tokens shaded by activation, the tokens of one character merged into it (its value the largest of
    theirs); the piece holding token `marked` is outlined."""
    pieces = merge(tokens)
    return "".join(
        _token_html(p.text, v, scale, p.covers(marked))
        for p, v in zip(pieces, merged_values(pieces, values), strict=True)
    )


def tokens_html(tokens: list[str], values: list[float], scale: float) -> str:
    """Tokens shaded by activation (relative to `scale`, e.g. the feature's corpus max), the max outlined."""
    top = max(range(len(values)), key=values.__getitem__) if values and max(values) > 0 else -1
    return _run_html(tokens, values, scale, top)


def _example(example: dict[str, Any], strings: list[str], scale: float) -> dict[str, Any]:
    html = _run_html([strings[t] for t in example["t"]], example["v"], scale, example["c"])
    return {"value": _num(example["x"]), "html": mark_safe(html)}  # every token string escaped above


def _histogram_bars(counts: list[int], hi: float) -> list[dict[str, str]]:
    """Bar geometry of the activation histogram (the template draws the SVG); empty when nothing fired."""
    if not counts or not any(counts):
        return []
    bar = HISTOGRAM_WIDTH / len(counts)
    top = max(counts)
    return [
        {
            "x": f"{i * bar:.1f}",
            "y": f"{HISTOGRAM_HEIGHT - HISTOGRAM_HEIGHT * c / top:.1f}",
            "width": f"{max(bar - 1, 1):.1f}",
            "height": f"{HISTOGRAM_HEIGHT * c / top:.1f}",
            "title": f"{hi * i / len(counts):.3g}–{hi * (i + 1) / len(counts):.3g}: {c}",
        }
        for i, c in enumerate(counts)
        if c
    ]


def _shaded_logits(pos: list, neg: list) -> dict[str, list[tuple[str, str, str]]]:
    """(token, value as text, CSS background) for the admin view: green promotes, red suppresses, the
    strength of the colour proportional to |value| over the largest |value| shown."""
    top = max([abs(float(v)) for _, v in [*pos, *neg]] or [1.0]) or 1.0

    def shade(rows: list, rgb: str) -> list[tuple[str, str, str]]:
        return [(tok, f"{float(v):+.3g}", f"rgba({rgb},{0.15 + 0.6 * abs(float(v)) / top:.2f})") for tok, v in rows]

    return {"pos": shade(pos, "0,158,115"), "neg": shade(neg, "213,94,0")}


def printable_logits(rows: list) -> list[list]:
    """[token, value] rows with each token printable (a vocabulary token may be part of a character)."""
    return [[printable(token), value] for token, value in rows]


def _frequency_sentence(n_firing: int, n_tokens: int) -> str:
    if n_firing == 0:
        return f"Never fires on the {_count(n_tokens)} tokens of this corpus."
    percent = 100 * n_firing / n_tokens if n_tokens else 0.0
    return f"Fires on {_count(n_firing)} of {_count(n_tokens)} tokens ({percent:.3g}%)."


def dashboard_context(*, dset: DashboardSet, row: FeatureDashboard, blind: bool) -> dict[str, Any]:
    """Everything the partial needs, with token runs already built as HTML (fast for 2000+ tokens)."""
    data = row.data
    strings = data["strings"]
    scale = row.max_activation
    top = [_example(ex, strings, scale) for ex in data["top"]]
    quantiles = [
        {
            "lo": _num(q["lo"]),
            "hi": _num(q["hi"]),
            "count": f"{q['count']:,} token{'' if q['count'] == 1 else 's'}",
            "examples": [_example(ex, strings, scale) for ex in q["examples"]],
        }
        for q in reversed(data["quantiles"])
    ]
    rare = row.n_firing < dset.config.get("top_k", 20)
    context: dict[str, Any] = {
        "blind": blind,
        "corpus_kind": dset.corpus.get_kind_display(),
        "frequency_sentence": _frequency_sentence(row.n_firing, dset.n_tokens),
        "rare": rare,
        "n_firing": row.n_firing,
        "max_activation": _num(row.max_activation),
        "mean_activation": _num(data["mean"]),
        "histogram": {
            "bars": _histogram_bars(data["histogram"]["counts"], data["histogram"]["hi"]),
            "width": HISTOGRAM_WIDTH,
            "height": HISTOGRAM_HEIGHT,
        },
        "top": top,
        # A rare feature's top examples already show every firing; samples would only repeat them.
        "quantiles": quantiles if row.n_firing > len(top) and len(quantiles) > 1 else [],
        "logits_pos": printable_logits(data["logits"].get("pos", [])),
        "logits_neg": printable_logits(data["logits"].get("neg", [])),
    }
    if not blind:
        context.update(
            {
                "logits_shaded": _shaded_logits(context["logits_pos"], context["logits_neg"]),
                "sae_name": dset.sae.name,
                "sae_method": dset.sae.get_method_display(),
                "hook_name": dset.sae.hook_name,
                "feature_index": row.feature_index,
                "corpus_name": dset.corpus.name,
            }
        )
    return context
