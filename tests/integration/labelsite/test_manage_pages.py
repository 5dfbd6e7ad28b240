"""Admin campaign pages: create through the form, see progress and settings, open/close/reopen, reassign."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelsite.models import Campaign, CampaignSAE
from labelsite.services.assignment import assignment_next
from tests.integration.labelsite.factories import campaign_form

pytestmark = pytest.mark.django_db


def test_admin_creates_a_campaign_through_the_form(admin_client, registry, bob, carol):
    page = admin_client.get(reverse("manage:campaign-new"))
    assert page.status_code == 200
    assert "3: A concept specific to the subject" in page.content.decode()  # the default rubric is prefilled
    response = admin_client.post(reverse("manage:campaign-new"), campaign_form(registry, [bob, carol]))
    campaign = Campaign.objects.get()
    assert response["Location"] == reverse("manage:campaign", args=[campaign.pk])
    assert (campaign.overlap, campaign.seed, campaign.lease_seconds) == (2, 11, 1200)
    assert all(q["rubric"][2] == {"score": 2, "label": "related"} for q in campaign.questions if q["type"] == "score")
    assert set(CampaignSAE.objects.values_list("n_features", flat=True)) == {20}
    assert set(campaign.labellers.all()) == {bob, carol}
    detail = admin_client.get(response["Location"]).content.decode()
    assert "Draft" in detail and registry.saes[0].name in detail and "Open campaign" in detail


def test_form_errors_are_shown_next_to_the_form(admin_client, registry, bob):
    response = admin_client.post(reverse("manage:campaign-new"), campaign_form(registry, [bob], overlap=2, rubric="x"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "should look like" in html
    response = admin_client.post(reverse("manage:campaign-new"), campaign_form(registry, [bob], overlap=2))
    assert "needs at least 2 labellers" in response.content.decode()
    assert not Campaign.objects.exists()


def test_close_reopen_and_reassign_from_the_detail_page(admin_client, open_campaign, bob, carol, alice):
    assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    detail = admin_client.get(reverse("manage:campaign", args=[open_campaign.pk])).content.decode()
    assert "Close campaign" in detail and "bob" in detail
    response = admin_client.post(
        reverse("manage:campaign-reassign", args=[open_campaign.pk]),
        {"from_user": bob.pk, "to_user": alice.pk},
        follow=True,
    )
    assert "Released 1 held item(s) of bob and handed over to alice." in response.content.decode()
    response = admin_client.post(reverse("manage:campaign-close", args=[open_campaign.pk]), follow=True)
    assert "Campaign closed" in response.content.decode()
    response = admin_client.post(reverse("manage:campaign-close", args=[open_campaign.pk]), follow=True)
    assert "Only an open campaign can be closed" in response.content.decode()
    admin_client.post(reverse("manage:campaign-reopen", args=[open_campaign.pk]))
    assert Campaign.objects.get().status == "open"
    assert "Math blind test" in admin_client.get(reverse("manage:campaign-list")).content.decode()


def test_api_creates_and_runs_a_campaign(admin_client, registry, bob, carol):
    body = {
        "name": "api campaign",
        "sources": [{"sae_id": registry.saes[0].pk, "n_features": 5}],
        "domain_corpus_id": registry.domain.pk,
        "general_corpus_id": registry.general.pk,
        "labeller_ids": [bob.pk, carol.pk],
        "overlap": 2,
        "rubric": [{"score": 0, "label": "no"}, {"score": 1, "label": "yes"}],
    }
    response = admin_client.post(reverse("manage-api:campaigns"), body, content_type="application/json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert (
        data["status"] == "draft"
        and data["sources"][0]["n_features"] == 5
        and data["labeller_ids"] == sorted([bob.pk, carol.pk])
    )
    again = admin_client.post(reverse("manage-api:campaigns"), body, content_type="application/json")
    assert again.status_code == 400 and "already exists" in again.json()["detail"]


def test_create_and_open_in_one_step(admin_client, registry, bob):
    from compute.models import Job

    response = admin_client.post(
        reverse("manage:campaign-new"), {**campaign_form(registry, [bob], overlap=1), "then": "open"}
    )
    campaign = Campaign.objects.get()
    assert response["Location"] == reverse("manage:campaign", args=[campaign.pk])
    assert campaign.status == Campaign.Status.PREPARING  # the opening job is queued, as the Open button does
    assert campaign.build_jobs.count() == 1 and Job.objects.count() == 1


def test_guidelines_preview_renders_markdown_safely(admin_client, bob):
    from django.test import Client

    url = reverse("manage:guidelines-preview")
    assert 'hx-post="' + url + '"' in admin_client.get(reverse("manage:campaign-new")).content.decode()
    html = admin_client.post(url, {"guidelines": "# Rules\n\n**Score** it. <script>alert(1)</script>"}).content.decode()
    assert "<h1>Rules</h1>" in html and "<strong>Score</strong>" in html and "<script>" not in html
    labeller = Client()
    labeller.force_login(bob)
    assert labeller.post(url, {"guidelines": "x"}).status_code == 403
