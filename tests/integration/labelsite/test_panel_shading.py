"""Blind panels shade tokens by rank, so how peaked a feature's activations are does not tell sources apart."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse

from labelsite.models import Campaign
from labelsite.services.campaigns import campaign_open
from labelsite.services.panels import Context, rank_shading, shade_class
from tests.integration.labelsite.factories import campaign_draft, registry_create, synthetic_dashboards

D_SAE = 200
N_PER_SOURCE = 40


def _ctx(relative: list[float]) -> Context:
    return Context(tokens=[f"t{i}" for i in range(len(relative))], relative=relative, value=1.0, seq=0, start=0)


def test_rank_shading_by_hand():
    sections = [[_ctx([0.0, 1.0, 0.25]), _ctx([0.25, 0.0])], [_ctx([0.5, 0.0, 0.0])]]
    shaded = rank_shading(sections)
    # activating values shown: 0.25, 0.25, 0.5, 1.0 -> ranks 1.5, 1.5, 3, 4 of n = 4
    assert [[c.relative for c in rows] for rows in shaded] == [[[0.0, 1.0, 0.375], [0.375, 0.0]], [[0.75, 0.0, 0.0]]]
    assert [[c.tokens for c in rows] for rows in shaded] == [[c.tokens for c in rows] for rows in sections]
    assert rank_shading([[_ctx([0.0, 0.0])], []])[0][0].relative == [0.0, 0.0]  # nothing fires: nothing shaded
    assert shade_class(1.0) == "h85" and shade_class(0.375) == "h37"


@pytest.fixture
def peaked_and_flat(db):
    """Two SAEs alike in frequency and magnitude; one's features fire on a single token per context
    (the others at most a tenth as strongly), the other's on many tokens almost as strongly."""
    registry = registry_create(d_sae=D_SAE, names=("peaked-sae", "flat-sae"))
    rng = np.random.default_rng(3)
    for k, sae in enumerate(registry.saes):
        spread = 0.1 if sae.name == "peaked-sae" else 1.0
        for c, corpus in enumerate((registry.domain, registry.general)):
            log_f = rng.normal(-2.0, 0.4, D_SAE).clip(-3.5, -1.0).tolist()
            synthetic_dashboards(
                sae=sae, corpus=corpus, log10_freqs=log_f, scale=(2.0, 4.0), seed=40 + 2 * k + c, spread=spread
            )
    return registry


def _mean_shades(campaign: Campaign) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for source_id, html in campaign.items.values_list("source__sae_id", "general_html"):
        alphas = [int(a) / 100 for a in re.findall(r'<span class="h(\d\d)">', html)]
        out.setdefault(source_id, []).append(float(np.mean(alphas)))
    return out


@pytest.mark.django_db
def test_peakedness_shows_only_with_the_intensity_extra(peaked_and_flat, bob, client):
    intensity = campaign_open(
        campaign_id=campaign_draft(
            registry=peaked_and_flat, labellers=[bob], features=N_PER_SOURCE, panel_extras=["intensity"], name="i"
        ).pk
    )
    # relative to the feature's max, the mean shade tells the sources apart: the content report says so, and the
    # campaign opens (shading by intensity is the feature's own activations, not something the platform adds)
    assert intensity.status == Campaign.Status.OPEN and not intensity.audit["leak"]
    aucs = {o["observable"]: o["auc"] for o in intensity.audit["content"]["observables"]}
    assert aucs["general.mean_highlight"] > 0.8 and aucs["domain.mean_highlight"] > 0.8
    assert "how strongly the firing tokens are shaded" in intensity.audit["content"]["summary"]
    peaked, flat = (_mean_shades(intensity)[s.pk] for s in peaked_and_flat.saes)
    assert np.median(peaked) + 0.1 < np.median(flat)  # the planted difference, measured on the bytes
    ranked = campaign_open(
        campaign_id=campaign_draft(registry=peaked_and_flat, labellers=[bob], features=N_PER_SOURCE, name="r").pk
    )
    assert ranked.status == Campaign.Status.OPEN, ranked.prepare_error
    assert not ranked.audit["leak"]
    aucs = {o["observable"]: o["auc"] for o in ranked.audit["content"]["observables"]}
    assert aucs["general.mean_highlight"] < 0.7 and aucs["domain.mean_highlight"] < 0.7

    # the labelling page says what the shades mean, for each kind of shading
    client.force_login(bob)
    for campaign, key in ((ranked, "shades rank the tokens"), (intensity, "closer its activation is to the feature")):
        page = client.get(client.post(reverse("label:next", args=[campaign.pk]))["Location"]).content.decode()
        assert key in page and page.count('class="muted shade-key"') == 1
