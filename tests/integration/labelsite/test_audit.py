"""The blinding audit: observables by hand, the classifier against known answers, timing, the command."""

from __future__ import annotations

import io
import json
import math
import random

import pytest
from django.core.management import call_command

from labelsite.models import Campaign, Item
from labelsite.services.audit import (
    CONTENT,
    PRESENTATION,
    audit_observables,
    campaign_audit,
    item_observables,
    observable_kind,
    observable_words,
    panel_observables,
)
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

PANEL = (
    '<div class="dash blind-panel"><p class="freq rare">Fires on 3.6k of 16.2k tokens (22.5%).</p>'
    '<h3>Strongest activations</h3><ul class="examples">'
    '<li><span class="val">4.2</span><span class="ctx"><span class="h85">x</span><span>y 12</span></span></li>'
    '<li><span class="ctx"><span class="h31">z</span><span><span class="ws">↵</span></span></span></li></ul>'
    '<svg class="dash-hist"><rect><title>0–0.5: 7</title></rect></svg></div>'
)


def test_panel_observables_by_hand():
    obs = panel_observables(PANEL)
    frame = PANEL.replace('<span class="h85">x</span><span>y 12</span>', "").replace(
        '<span class="h31">z</span><span><span class="ws">↵</span></span>', ""
    )
    # presentation: everything but the two rows' tokens
    assert obs["markup_bytes"] == len(frame.encode())
    assert obs["rows"] == 2 and obs["sections"] == 1 and obs["figures"] == 1 and obs["titles"] == 0
    # numbers the platform adds: 3.6k, 16.2k, 22.5%, the value 4.2, then 0, 0.5 and 7 in the chart's title text
    assert obs["numbers_added"] == 7
    assert obs["largest_added_number_log10"] == pytest.approx(math.log10(16200), abs=1e-6)
    classes = {"dash", "blind-panel", "freq", "rare", "examples", "val", "ctx", "dash-hist"}
    assert obs["classes"] == len(classes) and obs["class.ctx"] == 2 and obs["class.rare"] == 1
    # content: the tokens x, "y 12", z and a marked newline; shades 0.85 and 0.31; the digits 12 in the text
    assert obs["tokens"] == 4 and obs["highlighted_tokens"] == 2 and obs["shades"] == 2
    assert obs["max_highlight"] == 0.85 and obs["strong_highlights"] == 1
    assert obs["mean_highlight"] == pytest.approx((0.85 + 0.31) / 2)
    assert obs["numbers_shown"] == 1 and obs["largest_number_log10"] == pytest.approx(math.log10(12), abs=1e-6)
    assert obs["text_chars"] == len("xy 12") + len("z↵")
    no_numbers = panel_observables('<ul class="examples"><li><span class="ctx"><span>cat</span></span></li></ul>')
    assert no_numbers["numbers_shown"] == 0 and no_numbers["largest_number_log10"] == -10.0
    assert no_numbers["numbers_added"] == 0 and no_numbers["tokens"] == 1


def test_every_observable_is_presentation_or_content():
    assert {observable_kind(f"domain.{name}") for name in panel_observables(PANEL)} == {PRESENTATION, CONTENT}
    assert observable_kind("domain.highlighted_tokens") == CONTENT and observable_kind("general.rows") == PRESENTATION
    assert observable_kind("domain.class.leaky") == PRESENTATION
    assert observable_kind("total.markup_bytes") == PRESENTATION
    assert observable_words("domain.highlighted_tokens") == "how many tokens fire on domain text"
    assert observable_words("general.class.x") == 'the style class "x" on general text'


def test_panel_observables_read_the_blind_panels_short_markup():
    from labelsite.services.panels import Context, context_html

    # relative 1.0 -> alpha 0.08 + 0.77 = 0.85; 0.3 -> 0.311 -> 0.31; 0 -> not shaded; "\n" is a marked whitespace
    row = Context(tokens=["x", "\n", "z", " y"], relative=[1.0, 0.0, 0.3, 0.0], value=4.2, seq=0, start=0)
    obs = panel_observables(f'<ul class="examples">{context_html(row, magnitudes=False)}</ul>')
    assert obs["tokens"] == 4 and obs["rows"] == 1 and obs["numbers_added"] == 0
    assert obs["highlighted_tokens"] == 2 and obs["max_highlight"] == 0.85
    assert obs["mean_highlight"] == pytest.approx((0.85 + 0.31) / 2) and obs["strong_highlights"] == 1
    with_value = panel_observables(f'<ul class="examples">{context_html(row, magnitudes=True)}</ul>')
    assert with_value["numbers_added"] == 1 and with_value["tokens"] == 4  # the value is the platform's, not text


def test_item_observables_prefix_each_panel():
    obs = item_observables({"domain": PANEL, "general": "<p>x</p>"})
    assert obs["domain.rows"] == 2 and obs["general.rows"] == 0
    assert obs["total.markup_bytes"] == obs["domain.markup_bytes"] + len(b"<p>x</p>")


def _auc_brute_force(xs_a: list[float], xs_b: list[float]) -> float:
    """P(a random b-item scores above a random a-item), ties counting half: the AUC by definition."""
    wins = sum((b > a) + 0.5 * (b == a) for a in xs_a for b in xs_b)
    return wins / (len(xs_a) * len(xs_b))


def test_a_planted_leak_is_found_and_named():
    rng = random.Random(1)
    rows, labels = [], []
    for i in range(200):
        source = i % 2
        rows.append(
            {
                "noise.a": rng.gauss(0, 1),
                "noise.b": rng.random(),
                # the leak: a number shown that differs by source, with overlap
                "leaky": rng.gauss(2.0 if source else 0.0, 1.0),
            }
        )
        labels.append(source)
    result = audit_observables(rows, labels)
    assert result.leak and result.accuracy > 0.75 and result.ci_low > result.chance == 0.5
    assert result.most_revealing["observable"] == "leaky"
    xs = [r["leaky"] for r in rows]
    pairs = list(zip(xs, labels, strict=True))
    expected = _auc_brute_force([x for x, s in pairs if s == 0], [x for x, s in pairs if s == 1])
    assert result.most_revealing["auc"] == pytest.approx(max(expected, 1 - expected), abs=1e-4)
    assert result.n_items == 200 and result.n_sources == 2
    assert "Blinding leak" in result.summary() and "leaky" in result.summary()


def test_no_leak_when_the_sources_look_alike():
    rng = random.Random(2)
    rows = [{"a": rng.gauss(0, 1), "b": float(rng.randint(0, 5)), "c": rng.random()} for _ in range(200)]
    result = audit_observables(rows, [i % 2 for i in range(200)])
    assert not result.leak
    assert result.ci_low <= 0.5 <= result.ci_high + 0.05
    assert result.summary().startswith("Source predictable from what labellers see: ")


def test_wilson_interval_and_chance_by_hand():
    # 3 sources of 30, 30, 60 items: chance is the largest share, 0.5; a perfectly separating observable
    rows = [{"x": float(s)} for s in [0] * 30 + [1] * 30 + [2] * 60]
    labels = [0] * 30 + [1] * 30 + [2] * 60
    result = audit_observables(rows, labels)
    assert result.chance == 0.5 and result.accuracy == 1.0
    n, z = 120, 1.959963984540054
    low = (1 + z * z / (2 * n) - z * math.sqrt(z * z / (4 * n * n))) / (1 + z * z / n)  # Wilson, p = 1
    assert result.ci_low == pytest.approx(low, abs=1e-4) and result.ci_high == 1.0
    assert result.most_revealing == {"observable": "x", "auc": 1.0}


@pytest.mark.django_db
def test_audit_of_200_items_and_the_command_prints_json(registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=64))
    # every item shows 12 contexts; one SAE's panels carry a frequency sentence (a planted presentation leak);
    # both fire on as many tokens (content alike)
    rng = random.Random(3)
    for item in Item.objects.filter(campaign=campaign).select_related("source"):
        rows = "".join(
            f'<li><span class="ctx"><span class="h{rng.randint(8, 85):02d}">w{rng.randint(0, 99)}</span></span></li>'
            for _ in range(12)
        )
        leak = f"<p>Fires on {rng.uniform(0.01, 0.1) if item.source.sae == registry.saes[1] else rng.uniform(5, 30):.3g}% of tokens</p>"
        Item.objects.filter(pk=item.pk).update(
            domain_html=leak + f'<ul class="examples">{rows}</ul>', general_html=f'<ul class="examples">{rows}</ul>'
        )
    out = io.StringIO()
    call_command("audit_blinding", str(campaign.pk), stdout=out)
    result = json.loads(out.getvalue())
    assert {"accuracy", "ci_low", "ci_high", "chance", "n_items", "most_revealing", "leak"} <= set(result)
    assert {"accuracy", "interval", "verdict", "swap_test"} <= set(result["presentation"])
    assert {"accuracy", "interval", "separating"} <= set(result["content"])
    assert result["n_items"] == 128 and result["chance"] == 0.5 and result["leak"]
    assert result["presentation"]["verdict"] == "fail"
    assert result["most_revealing"]["observable"].startswith("domain.") and result["most_revealing"]["auc"] == 1.0
    assert observable_kind(result["most_revealing"]["observable"]) == PRESENTATION
    # the panels were written by hand, not by the renderer: the swap test says the stored bytes are not its own
    swap = result["presentation"]["swap_test"]
    assert not swap["passed"] and swap["differences"][0]["part"].endswith("as stored")
    assert swap["differences"][0]["as_source"] == 0
    assert Campaign.objects.get(pk=campaign.pk).audit["accuracy"] == result["accuracy"]
    by_name = io.StringIO()
    call_command("audit_blinding", campaign.name, stdout=by_name)
    assert json.loads(by_name.getvalue())["accuracy"] == result["accuracy"]  # same seed, same verdict
    # 200 items (two SAEs of 100), observable extraction included
    wide = registry_create(d_sae=128, names=("wide-a", "wide-b"))
    big = campaign_open_offline(campaign_draft(registry=wide, labellers=[bob], features=100, name="big"))
    Item.objects.filter(campaign=big).update(domain_html=rows * 4, general_html=rows * 4)
    result = campaign_audit(campaign_id=big.pk)
    assert result.presentation.n_items == 200 and result.seconds > 0
