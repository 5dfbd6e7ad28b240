"""A statistical leak test: can the source be predicted from everything a labeller's browser receives?

Two synthetic SAEs whose features differ sharply in firing frequency (one dense, one rare) get dashboards
on both corpora; a labeller crawls a campaign over both, item by item (the item page, its API view, the
answer to each submission). A classifier of our own (logistic regression on simple counts of the crawled
bytes, independent of the audit's random forest) must stay near chance with the blind defaults and matched
sampling — and must not when frequency figures are switched on (the planted-leak control), where the
platform's own audit must also report the leak and opening must ask for confirmation.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse

from labelsite.models import Campaign, Item
from labelsite.services.campaigns import campaign_open
from labelsite.services.panels import SECTIONS
from tests.integration.labelsite.factories import campaign_draft, registry_create, synthetic_dashboards

pytestmark = pytest.mark.django_db

D_SAE = 300
N_PER_SOURCE = 50
ANSWERS = {"domain_explanation": "x", "domain_score": "1", "general_explanation": "y", "general_score": "0"}


@pytest.fixture
def dense_and_rare(db):
    registry = registry_create(d_sae=D_SAE, names=("dense-sae", "rare-sae"))
    rng = np.random.default_rng(0)
    # dense: median firing ~1 in 160 tokens; rare: ~1 in 6,300 (many with fewer contexts than a panel's rows)
    centres = {"dense-sae": -2.2, "rare-sae": -3.8}
    for k, sae in enumerate(registry.saes):
        log_d = rng.normal(centres[sae.name], 0.6, D_SAE).clip(-4.9, -0.5)
        log_g = (log_d + rng.normal(0, 0.3, D_SAE)).clip(-4.9, -0.5)
        scale = (1.0, 3.0) if sae.name == "dense-sae" else (5.0, 15.0)  # magnitudes differ too
        synthetic_dashboards(sae=sae, corpus=registry.domain, log10_freqs=log_d.tolist(), scale=scale, seed=10 + k)
        synthetic_dashboards(sae=sae, corpus=registry.general, log10_freqs=log_g.tolist(), scale=scale, seed=20 + k)
    return registry


# headers whose values follow the content, the clock or the next item's code (compared by name only)
PER_RESPONSE = {"Content-Length", "Date", "Location", "Set-Cookie"}


def _headers(*responses) -> tuple:
    return tuple(
        (i, k, "" if k in PER_RESPONSE else v) for i, r in enumerate(responses) for k, v in sorted(r.headers.items())
    )


def _crawl(client, campaign, headers: dict | None = None) -> dict[str, str]:
    """Everything the labeller receives per item: the item page, its API view and the answer to the submit
    (and, into `headers`, each item's response headers)."""
    received: dict[str, str] = {}
    while True:
        response = client.post(reverse("label:next", args=[campaign.pk]))
        if "/label/i/" not in response.get("Location", ""):
            break
        code = response["Location"].rstrip("/").rsplit("/", 1)[1]
        page_response = client.get(response["Location"])
        api_response = client.get(reverse("label-api:item", args=[code]))
        page, api = page_response.content.decode(), api_response.content.decode()
        answer = client.post(reverse("label:item", args=[code]), ANSWERS)
        assert answer.status_code == 302, answer.content.decode()[:500]
        received[code] = page + "\n" + api + "\n" + answer.get("Location", "")
        if headers is not None:
            headers[code] = _headers(page_response, api_response, answer)
    return received


def _observables(text: str) -> list[float]:
    """Counts a curious labeller could make of the bytes (ours, not the audit's)."""
    visible = re.sub(r"<[^>]*>", " ", text)
    alphas = [int(a) / 100 for a in re.findall(r'<span class="h(\d\d)">', text)]  # a shaded token: alpha 0.NN
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", visible)]
    percents = [float(n) for n in re.findall(r"(\d+(?:\.\d+)?)\s*%", visible)]
    return [
        len(text.encode()),
        text.count("<li"),
        len(alphas),
        sum(alphas),
        max(alphas, default=0.0),
        len(numbers),
        np.log10(1e-9 + max(numbers, default=0.0)),
        np.log10(1e-9 + min(numbers, default=0.0)),
        text.count("title="),
        text.count("%"),
        np.mean(np.log10(1e-9 + np.array(percents))) if percents else -9.0,
    ]


def _accuracy(received: dict[str, str], campaign) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source = dict(Item.objects.filter(campaign=campaign).values_list("code", "source_id"))
    codes = sorted(received)
    x = np.array([_observables(received[c]) for c in codes])
    y = np.array([source[c] for c in codes])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean())


def test_blind_defaults_with_matched_sampling_keep_the_source_near_chance(client, dense_and_rare, alice, bob):
    campaign = campaign_draft(
        registry=dense_and_rare, labellers=[bob], features=N_PER_SOURCE, sampling="matched", name="blind"
    )
    campaign = campaign_open(campaign_id=campaign.pk)
    assert campaign.status == Campaign.Status.OPEN, campaign.prepare_error
    assert not campaign.audit["leak"] and campaign.audit["ci_low"] <= campaign.audit["chance"]
    assert campaign.audit["presentation"]["verdict"] == "pass"
    report = campaign.sampling_report
    assert report["ks"]["p_value"] > 0.05  # the drawn log frequencies match across sources
    taken = [s["contributed"] for s in report["per_source"]]
    assert taken[0] == taken[1] >= 30
    client.force_login(alice)  # the campaign page shows both
    page = client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert "Presentation blind: Swap test passed" in page and "Could not contribute" in page
    assert f'<td class="num">{N_PER_SOURCE - taken[0]}</td>' in page
    client.force_login(bob)
    headers: dict[str, tuple] = {}
    received = _crawl(client, campaign, headers)
    assert len(received) == 2 * taken[0]
    # response headers are the same whatever the source (only lengths, cookies and the next code vary)
    source = dict(Item.objects.filter(campaign=campaign).values_list("code", "source_id"))
    by_source = {s: {h for c, h in headers.items() if source[c] == s} for s in set(source.values())}
    first, second = by_source.values()
    assert first == second and len(first) == 1, (first, second)
    # every item has the same sections and rows, whatever its source (two panels, in the page and the API)
    for text in received.values():
        assert text.count("Strongest activations") == 4 and text.count("Weaker activations") == 4
        assert text.count('<li><span class="ctx">') == 2 * sum(n for _, n in SECTIONS)  # the page's rows
    assert _accuracy(received, campaign) < 0.5 + 0.12


def test_planted_leak_frequency_figures_are_caught(client, dense_and_rare, alice, bob):
    campaign = campaign_draft(
        registry=dense_and_rare, labellers=[bob], features=N_PER_SOURCE, panel_extras=["frequency"], name="leaky"
    )
    campaign = campaign_open(campaign_id=campaign.pk)
    # the audit finds the leak before anyone sees an item: the campaign waits for confirmation
    assert campaign.status == Campaign.Status.DRAFT
    assert campaign.audit["leak"] and campaign.audit["accuracy"] > 0.8
    # the sentence's numbers, or the "rare" mark it carries: both are the platform's, not the feature's content
    revealing = campaign.audit["presentation"]["most_revealing"]["observable"]
    assert "number" in revealing or revealing.endswith("class.rare")
    assert campaign.audit["presentation"]["swap_test"]["passed"]  # a function of content, but not of content shown
    assert "Blinding leak" in campaign.prepare_error
    client.force_login(alice)
    page = client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert "Open anyway (audit failed)" in page and 'name="confirm_leak"' in page
    campaign = campaign_open(campaign_id=campaign.pk, confirm_leak=True)
    assert campaign.status == Campaign.Status.OPEN
    client.force_login(bob)
    assert _accuracy(_crawl(client, campaign), campaign) > 0.5 + 0.2  # the near-chance bound above can fail


def test_same_feature_renders_differently_in_two_campaigns(dense_and_rare, bob):
    first = campaign_open(
        campaign_id=campaign_draft(registry=dense_and_rare, labellers=[bob], features=40, seed=7, name="one").pk
    )
    second = campaign_open(
        campaign_id=campaign_draft(registry=dense_and_rare, labellers=[bob], features=40, seed=7, name="two").pk,
        confirm_leak=True,
    )
    panels = {
        c.pk: {(i.source.sae_id, i.feature_index): i.domain_html for i in c.items.select_related("source")}
        for c in (first, second)
    }
    shared = set(panels[first.pk]) & set(panels[second.pk])
    assert len(shared) == 80  # same seed, same features ...
    differ = sum(panels[first.pk][k] != panels[second.pk][k] for k in shared)
    assert differ >= 0.9 * len(shared)  # ... but not the same bytes
