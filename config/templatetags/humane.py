"""Numbers as people read them: `{% load humane %}` then `{{ value|humane }}` or `{{ value|humane:"nats" }}`.

Whole numbers get thousands separators (12,345); other numbers three significant digits (0.0123, 1.23e-05
written as 1.23×10⁻⁵); None and NaN become an en dash. Used by every page that shows a measurement.
"""

from __future__ import annotations

import math
from numbers import Number

from django import template

register = template.Library()

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def humane_number(value: object, unit: str = "") -> str:
    """The value with thousands separators or 3 significant digits, and its unit."""
    if isinstance(value, list | tuple):
        return ", ".join(humane_number(v, unit) for v in value)
    if value is None or isinstance(value, bool) or not isinstance(value, Number | str):
        return "–" if value is None else str(value)
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        text = f"{int(value):,}"
    elif value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        mantissa, exponent = f"{value:.2e}".split("e")
        text = f"{mantissa}×10{str(int(exponent)).translate(_SUPERSCRIPT)}"
    else:
        text = f"{value:,.{max(0, 2 - math.floor(math.log10(abs(value))))}f}" if value else "0"
    return f"{text} {unit}".strip() if unit else text


@register.filter
def humane(value: object, unit: str = "") -> str:
    return humane_number(value, unit)


@register.filter
def label(key: object) -> str:
    """A dict key as a heading: `tokens_per_s` -> `tokens per s`."""
    return str(key).replace("_", " ")
