"""Inline SVG figures carry nothing the site's Content-Security-Policy refuses, and still draw the same."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from config.figures import PALETTE, _without_stylesheet, new_figure, svg_text
from config.security import CONTENT_SECURITY_POLICY

SVG = "{http://www.w3.org/2000/svg}"


def _figure():
    fig, ax = new_figure()
    ax.plot([0, 1, 2], [1, 3, 2], label="curve")
    ax.errorbar([0.5], [2], yerr=[[0.5], [0.7]], fmt="o", label="mean")
    ax.set_xlabel("x")
    ax.legend()
    return fig


def test_inline_figures_have_no_style_element_and_keep_its_rule_as_inherited_attributes():
    assert "style-src 'self'" in CONTENT_SECURITY_POLICY  # what would refuse a <style> element
    text = svg_text(_figure())
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg"
    assert not list(root.iter(f"{SVG}style"))
    # matplotlib's stylesheet is `*{stroke-linejoin: round; stroke-linecap: butt}`: every element inherits it
    assert (root.get("stroke-linejoin"), root.get("stroke-linecap")) == ("round", "butt")
    assert len(list(root.iter(f"{SVG}path"))) > 5  # the figure is still drawn


def test_an_unknown_stylesheet_is_refused_rather_than_dropped():
    with pytest.raises(ValueError, match="stylesheet"):
        _without_stylesheet('<svg width="1"><defs><style>*{fill: url(x) red}</style></defs></svg>')
    with pytest.raises(ValueError, match="<style>"):
        _without_stylesheet('<svg width="1"><defs><style>path{fill: red}</style></defs></svg>')


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("config/favicon.svg")
    page = client.get("/accounts/login/").content.decode()
    assert 'rel="icon"' in page and "favicon.svg" in page


def test_ten_lines_never_share_a_colour_and_a_line_style():
    fig, ax = new_figure()
    lines = [ax.plot([0, 1], [i, i + 1])[0] for i in range(10)]
    looks = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(looks) == 10
    assert [line.get_color().lower() for line in lines[:8]] == [c.lower() for c in PALETTE]
