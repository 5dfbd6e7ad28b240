"""The product's one plotting approach: matplotlib rendered on the server.

Pages embed figures as inline SVG (no script, nothing from a CDN); every figure can also be downloaded as
PNG or SVG through `figure_response`. Callers build a figure with `new_figure`, draw on its axes with the
plain matplotlib API, and hand it to `svg_text` / `figure_response`. matplotlib is imported lazily so that
pages without figures never pay for it.
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

from django.http import HttpResponse
from django.utils.text import slugify

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
# A palette that stays distinguishable for common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
LINESTYLES = ("-", "--", ":")


def new_figure(*, width: float = 6.4, height: float = 3.6, ncols: int = 1, nrows: int = 1) -> tuple[Figure, object]:
    """A figure and its axes (an array when ncols or nrows > 1), styled like every other figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows=nrows, ncols=ncols, squeeze=True)
    for ax in fig.axes:
        # past the palette's 8 colours, lines go on dashed then dotted: no two lines look the same
        ax.set_prop_cycle(color=PALETTE * len(LINESTYLES), linestyle=[style for style in LINESTYLES for _ in PALETTE])
        ax.grid(True, alpha=0.25, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def render(fig: Figure, fmt: str) -> bytes:
    """The figure as SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; use one of {sorted(FORMATS)}")
    buffer = io.BytesIO()
    # svg.hashsalt + no date metadata: the same figure renders to the same bytes.
    fig.savefig(buffer, format=fmt, dpi=144, metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()


_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
# matplotlib's one stylesheet, `*{stroke-linejoin: round; stroke-linecap: butt}` in <defs>
_STYLESHEET = re.compile(r"<style[^>]*>\s*\*\s*\{([^}]*)\}\s*</style>")
_DECLARATION = re.compile(r"^\s*([a-z-]+)\s*:\s*([\w#.%-]+)\s*$")


def _without_stylesheet(svg: str) -> str:
    """The SVG with matplotlib's `<style>` block (which the site's Content-Security-Policy refuses on a page)
    turned into presentation attributes of the root element, which every element inherits.

    Only the universal rule matplotlib writes is understood; any other stylesheet is an error, not dropped."""
    match = _STYLESHEET.search(svg)
    if match is None:
        attributes = ""
    else:
        declarations = [d for d in match[1].split(";") if d.strip()]
        parsed = [_DECLARATION.match(d) for d in declarations]
        if not all(parsed):
            raise ValueError(f"unexpected SVG stylesheet {match[0]!r}")
        attributes = "".join(f' {m[1]}="{m[2]}"' for m in parsed)
        svg = svg[: match.start()] + svg[match.end() :]
    svg = svg.replace("<svg ", f"<svg{attributes} ", 1)
    if "<style" in svg:
        raise ValueError("an SVG figure kept a <style> element, which the Content-Security-Policy blocks")
    return svg


def svg_text(fig: Figure) -> str:
    """The figure as an inline `<svg>` element (XML prologue and doctype removed) without inline stylesheets,
    so the site's Content-Security-Policy (`style-src 'self'`) has nothing to refuse."""
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "labelsite", "svg.fonttype": "none"}):
        data = render(fig, "svg")
    return _without_stylesheet(_XML_PROLOGUE.sub("", data.decode(), count=1))


def figure_response(fig: Figure, *, fmt: str, name: str) -> HttpResponse:
    """A download of the figure as `name.fmt` (fmt: svg or png)."""
    response = HttpResponse(render(fig, fmt), content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="{slugify(name) or "figure"}.{fmt}"'
    return response
