"""Pages say what state a campaign is in: a preparing campaign reads "preparing" (no full progress bar for 0 of 0),
and a campaign without judgments shows no "median — s"."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelsite.models import Campaign

pytestmark = pytest.mark.django_db


def test_a_preparing_campaign_says_so_to_its_labellers(labeller_client, registry, bob):
    from tests.integration.labelsite.factories import campaign_draft

    campaign = campaign_draft(registry=registry, labellers=[bob], name="Coming soon")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.PREPARING)
    for url in (reverse("home"), reverse("label:index"), reverse("label:campaign", args=[campaign.pk])):
        html = labeller_client.get(url).content.decode()
        assert "Coming soon" in html and "No campaigns yet" not in html
        assert "preparing" in html.lower()
        assert 'role="progressbar"' not in html  # 0 of 0 is not a full bar


def test_an_open_campaign_shows_its_progress_bar(labeller_client, open_campaign):
    html = labeller_client.get(reverse("label:campaign", args=[open_campaign.pk])).content.decode()
    assert 'role="progressbar"' in html and 'aria-valuenow="0"' in html


def test_no_median_time_before_any_judgment(admin_client, open_campaign):
    html = admin_client.get(reverse("manage:campaign", args=[open_campaign.pk])).content.decode()
    assert "median — s" not in html and "median" not in html.split("judgments (")[1].split("</p>")[0]
