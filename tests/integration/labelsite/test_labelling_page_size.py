"""A full-size labelling page on the wire: two panels of 10 + 5 contexts of 33 tokens, every token shaded (the most
markup a panel can have), English text with characters to escape. Compressed it stays far under 100 KB, and it
still shows every token of the contexts it drew, with the shade of its activation, as the source data has them."""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from compute.models import DashboardSet, FeatureDashboard
from labelsite.models import Item
from labelsite.services.campaigns import campaign_open
from labelsite.services.panels import SECTIONS, shade_class
from tests.integration.labelsite.factories import campaign_draft, registry_create

pytestmark = pytest.mark.django_db

TEXT = """The derivative of x squared is 2x, so the slope at x = 1 is two. In 1905 Einstein published "On the
Electrodynamics of Moving Bodies" & three other papers; the last one showed that E = mc^2 (mass < energy?).
Brown's students wrote: 'the integral of 1/x is ln |x| + C', which they checked against the table.
A matrix A is invertible if and only if det(A) != 0; its eigenvalues are the roots of det(A - t I) = 0."""
TOKENS = re.findall(r"\s?\w+|\s?[^\w\s]|\n", TEXT)  # GPT-style pieces: " the", ",", "\n"
WIDTH = 33
N_FEATURES = 12


def _example(rng, value: float, local: dict[str, int], start: int) -> dict:
    words = TOKENS[start : start + WIDTH]
    values = rng.uniform(0.01, value, WIDTH)  # every token fires
    values[24] = value
    return {"t": [local.setdefault(w, len(local)) for w in words], "v": np.round(values, 4).tolist(), "c": 24,
            "x": value, "s": int(rng.integers(0, 10**6)), "p": 24}  # fmt: skip


def _dense_dashboards(*, sae, corpus, seed: int) -> None:
    """A ready set whose features have 20 top contexts and 10 bins of 5 samples, every token activating."""
    rng = np.random.default_rng(seed)
    dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status=DashboardSet.Status.READY, n_tokens=100_000,
                                       n_features=N_FEATURES)  # fmt: skip
    rows = []
    for index in range(N_FEATURES):
        local: dict[str, int] = {}
        peak = float(rng.uniform(2, 6))
        starts = iter(rng.permutation(len(TOKENS) - WIDTH).tolist())  # each context its own window of the text
        top = [
            _example(rng, float(v), local, next(starts)) for v in sorted(rng.uniform(0.5, 1.0, 20) * peak, reverse=True)
        ]
        quantiles = [{"lo": peak * b / 10, "hi": peak * (b + 1) / 10, "count": 100,
                      "examples": [_example(rng, peak * (b + 0.5) / 10, local, next(starts)) for _ in range(5)]}
                     for b in range(10)]  # fmt: skip
        data = {"top": top, "quantiles": quantiles, "histogram": {"counts": [1] * 20, "hi": peak}, "mean": peak / 3,
                "logits": {"pos": [], "neg": []}, "strings": sorted(local, key=local.get)}  # fmt: skip
        rows.append(FeatureDashboard(dashboard_set=dset, feature_index=index, n_firing=500, frequency=0.005,
                                     max_activation=peak, payload=FeatureDashboard.pack(data)))  # fmt: skip
    FeatureDashboard.objects.bulk_create(rows)


class _Rows(HTMLParser):
    """Per panel (by its heading), the rows shown: each token's text as displayed and its class."""

    def __init__(self) -> None:
        super().__init__()
        self.panels: dict[str, list[list[tuple[str, str]]]] = {}
        self.heading = ""
        self.in_h2 = False
        self.depth = 0  # span depth inside a context row (1: the row, 2: a token, 3: a marked whitespace)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self.in_h2, self.heading = True, ""
        elif tag == "span" and (self.depth or attrs.get("class") == "ctx"):
            self.depth += 1
            if self.depth == 1:
                self.panels.setdefault(self.heading, []).append([])
            elif self.depth == 2:
                self.panels[self.heading][-1].append(["", attrs.get("class") or ""])

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False
        elif tag == "span" and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.in_h2:
            self.heading += data
        elif self.depth >= 2:
            self.panels[self.heading][-1][-1][0] += data


@pytest.fixture
def full_size_item(client, bob):
    registry = registry_create(d_sae=N_FEATURES, names=("a-sae", "b-sae"))
    for k, sae in enumerate(registry.saes):
        _dense_dashboards(sae=sae, corpus=registry.domain, seed=2 * k)
        _dense_dashboards(sae=sae, corpus=registry.general, seed=2 * k + 1)
    campaign = campaign_open(campaign_id=campaign_draft(registry=registry, labellers=[bob], features=4).pk)
    client.force_login(bob)
    location = client.post(reverse("label:next", args=[campaign.pk]))["Location"]
    item = Item.objects.select_related("source", "campaign").get(code=location.rstrip("/").rsplit("/", 1)[1])
    return item, client.get(location, HTTP_ACCEPT_ENCODING="gzip")


def _source_rows(item: Item, corpus_id: int) -> dict[tuple[str, ...], list[float]]:
    """The feature's contexts in the source data: token texts as displayed -> each token's activation."""
    row = FeatureDashboard.objects.get(dashboard_set__sae_id=item.source.sae_id, dashboard_set__corpus_id=corpus_id,
                                       feature_index=item.feature_index)  # fmt: skip
    data = row.data
    examples = data["top"] + [e for q in data["quantiles"] for e in q["examples"]]
    out = {tuple(data["strings"][t].replace("\n", "↵") for t in ex["t"]): ex["v"] for ex in examples}
    assert len(out) == len(examples)  # every context its own text, so a row shown names its values
    return out


def test_full_size_item_page_is_under_100_kb_compressed_and_shows_every_token(full_size_item):
    from scipy.stats import rankdata

    item, response = full_size_item
    assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
    html = gzip.decompress(response.content).decode()
    assert len(response.content) < 100_000, len(response.content)
    parser = _Rows()
    parser.feed(html)
    corpora = {"domain": item.campaign.domain_corpus_id, "general": item.campaign.general_corpus_id}
    shown = {kind: rows for heading, rows in parser.panels.items() for kind in corpora if kind in heading}
    assert set(shown) == {"domain", "general"}
    for kind, rows in shown.items():
        source = _source_rows(item, corpora[kind])
        assert len(rows) == sum(n for _, n in SECTIONS) == 15  # full size: 10 strongest + 5 weaker
        # every token of one of the source's contexts ...
        assert all(len(tokens) == WIDTH and tuple(t for t, _ in tokens) in source for tokens in rows)
        values = [v for tokens in rows for v in source[tuple(t for t, _ in tokens)]]
        # ... shaded by its activation's rank among the activating tokens the panel shows (ties share their mean)
        ranks = iter(rankdata([v for v in values if v > 0]) / sum(v > 0 for v in values))
        expected = [shade_class(next(ranks)) if v > 0 else "" for v in values]
        assert [c for tokens in rows for _, c in tokens] == expected


def test_every_shade_class_has_the_colour_of_the_inline_style_it_replaced():
    with open(finders.find("labelsite/panels.css")) as file:
        css = file.read()
    rules = dict(re.findall(r"\.blind-panel \.(h\d\d)\{background:(rgba\([^)]*\))\}", css))
    for rel in np.linspace(0.0005, 1.0, 4000):
        # the page used to carry style="background:rgba(255,120,0,A)" with A = 0.08 + 0.77 x relative, 2 decimals
        assert rules[shade_class(float(rel))] == f"rgba(255,120,0,{0.08 + 0.77 * rel:.2f})"
    assert shade_class(5.0) == "h85"  # above the max (quantile samples can be): the strongest shade
