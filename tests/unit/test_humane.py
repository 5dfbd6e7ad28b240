"""Numbers shown humanely: thousands separators for whole numbers, three significant digits otherwise."""

from __future__ import annotations

import math

from config.templatetags.humane import humane_number, label


def test_humane_numbers_hand_checked():
    assert humane_number(1234567) == "1,234,567"
    assert humane_number(0.012345) == "0.0123"
    assert humane_number(123.456) == "123"
    assert humane_number(2.5, "nats") == "2.50 nats"
    assert humane_number(1.23456e-5) == "1.23×10⁻⁵"
    assert humane_number(-0.25) == "-0.250"
    assert humane_number(None) == humane_number(math.nan) == "–"
    assert humane_number([1000, 0.5]) == "1,000, 0.500"
    assert humane_number("text") == "text" and humane_number(True) == "True"
    assert label("tokens_per_s") == "tokens per s"
