"""A campaign's human explanations scored beside automated ones: start, jobs, comparison page, exports.

Every feature of the two SAEs is synthetic (index % 4 == 0 fires on digits, == 1 on colour words, the
rest on plain text); the LLM is a loopback endpoint answering like a literal model.
"""

from __future__ import annotations

import csv
import io
import json
import random

import pytest
from django.test import Client

from compute.jobs import job_run
from compute.models import DashboardSet, Explanation, ExplanationScore, FeatureDashboard, Job, JobKind, JobStatus
from labelsite.models import Campaign, Item, Judgment
from labelsite.services.autointerp import campaign_autointerp_start
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create
from tests.synthetic_features import (
    COLOURS,
    DIGITS,
    colour_activation,
    digit_activation,
    packed_dashboard,
    plain_dashboard,
    rule_llm_server,
    sequences,
)

pytestmark = pytest.mark.django_db
D_SAE = 16


def _dashboards(registry) -> None:
    rng = random.Random(5)
    for sae in registry.saes:
        for corpus in (registry.domain, registry.general):
            dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_tokens=9000, n_features=D_SAE)
            rows = []
            for f in range(D_SAE):
                offset = 1000 * f
                if f % 4 == 0:
                    data = packed_dashboard(sequences(rng, 60, special=DIGITS), digit_activation, seq_offset=offset)
                elif f % 4 == 1:
                    data = packed_dashboard(sequences(rng, 90, special=COLOURS), colour_activation, seq_offset=offset)
                else:
                    data = plain_dashboard(sequences(rng, 6, special=None), seq_offset=offset)
                payload = FeatureDashboard.pack(data)
                rows.append(
                    FeatureDashboard(
                        dashboard_set=dset,
                        feature_index=f,
                        n_firing=50,
                        frequency=0.01,
                        max_activation=10.0,
                        payload=payload,
                    )  # fmt: skip
                )
            FeatureDashboard.objects.bulk_create(rows)


def _judge(item: Item, labeller, *, domain: str, general: str, score: int) -> Judgment:
    answers = {
        "domain_explanation": domain,
        "domain_score": score,
        "general_explanation": general,
        "general_score": score,
        "nice": False,
        "comment": "",
    }
    fields = {f.name for f in Judgment._meta.get_fields()}
    if "answers" in fields:
        return Judgment.objects.create(item=item, campaign=item.campaign, labeller=labeller, answers=answers)
    return Judgment.objects.create(item=item, campaign=item.campaign, labeller=labeller, **answers)


@pytest.fixture
def campaign(bob):
    registry = registry_create(d_sae=D_SAE)
    _dashboards(registry)
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=3))
    for item in Item.objects.filter(campaign=campaign).select_related("source"):
        # Bob is right about digit features and calls everything else "colours".
        text = "digits" if item.feature_index % 4 == 0 else "colours"
        _judge(item, bob, domain=text, general=text, score=3 if text == "digits" else 1)
    return campaign


@pytest.fixture
def endpoint(settings):
    with rule_llm_server() as server:
        settings.LLM_BASE_URL = server.base_url
        settings.LLM_MODEL = "rule-model"
        settings.LLM_RETRIES = 1
        yield server


def _run_all(jobs) -> None:
    for job in jobs:
        job.refresh_from_db()
        assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error


def test_start_scores_human_explanations_per_panel_and_double_clicks_start_nothing_twice(campaign, endpoint):
    jobs, skipped = campaign_autointerp_start(campaign_id=campaign.pk)
    assert skipped == [] and len(jobs) == 4  # 2 sources x (domain, general)
    again, _ = campaign_autointerp_start(campaign_id=campaign.pk)
    assert sorted(j.pk for j in again) == sorted(j.pk for j in jobs)
    _run_all(jobs)

    items = Item.objects.filter(campaign=campaign).count()
    firing = Item.objects.filter(campaign=campaign, feature_index__in=[f for f in range(D_SAE) if f % 4 < 2]).count()
    # One human explanation per item and panel; one automated per firing feature and corpus (a silent
    # feature has nothing to explain from, nor held-out contexts to score on); two scores each.
    assert Explanation.objects.filter(source="human", campaign_id=campaign.pk).count() == 2 * items
    assert Explanation.objects.filter(source="auto").count() == 2 * firing
    assert ExplanationScore.objects.count() == 2 * 2 * 2 * firing
    human = Explanation.objects.filter(source="human").select_related("feature__dashboard_set")
    for e in human:
        assert e.ref.endswith("/domain") == (e.feature.dashboard_set.corpus_id == campaign.domain_corpus_id)


def test_comparison_page_and_exports(campaign, endpoint, admin_client):
    jobs, _ = campaign_autointerp_start(campaign_id=campaign.pk)
    _run_all(jobs)
    page = admin_client.get(f"/manage/campaigns/{campaign.pk}/autointerp/")
    assert page.status_code == 200
    comparison = page.context["comparison"]
    assert len(comparison["sources"]) == 4
    by_feature = {(r["sae"], r["corpus"], r["feature_index"]): r for r in comparison["features"]}
    for (_, _, index), row in by_feature.items():
        # Plain-text features have no held-out activating contexts: nothing to score there.
        if index % 4 == 0:  # bob said "digits": right, like the model
            assert row["human_detection"] >= 0.95 and row["auto_detection"] >= 0.95
        elif index % 4 == 1:  # a colour feature: bob's "colours" is right too
            assert row["human_detection"] >= 0.95
    # Links to dashboards from the disagreement lists.
    for source in comparison["sources"]:
        for d in source["disagree"]:
            assert d["url"] in page.content.decode()

    # The campaign's results page shows the same comparison.
    results = admin_client.get(f"/manage/campaigns/{campaign.pk}/results/").content.decode()
    assert "Automated and human explanations" in results and comparison["sources"][0]["sae"] in results

    # ... and the results export carries it.
    exported = admin_client.get(f"/api/manage/campaigns/{campaign.pk}/breakdown.json")
    assert exported.status_code == 200, exported.content[:300]
    assert len(json.loads(exported.content)["autointerp"]["sources"]) == 4

    csv_response = admin_client.get(f"/manage/campaigns/{campaign.pk}/autointerp.csv")
    rows = list(csv.DictReader(io.StringIO(csv_response.content.decode())))
    assert len(rows) == len(comparison["features"])
    json_response = admin_client.get(f"/manage/campaigns/{campaign.pk}/autointerp.json")
    assert len(json.loads(json_response.content)["sources"]) == 4
    assert admin_client.get(f"/manage/campaigns/{campaign.pk}/autointerp.xml").status_code == 404


def test_hidden_mapping_hides_the_comparison(campaign, admin_client, bob):
    Campaign.objects.filter(pk=campaign.pk).update(hide_mapping_until_closed=True)
    page = admin_client.get(f"/manage/campaigns/{campaign.pk}/autointerp/")
    assert page.context["comparison"] is None and "until this campaign closes" in page.content.decode()
    assert admin_client.get(f"/manage/campaigns/{campaign.pk}/autointerp.csv").status_code == 409
    labeller = Client()
    labeller.force_login(bob)
    assert labeller.get(f"/manage/campaigns/{campaign.pk}/autointerp/").status_code == 403


def test_start_view_reports_missing_dashboards(campaign, admin_client):
    DashboardSet.objects.filter(corpus=campaign.general_corpus).update(status="building")
    response = admin_client.post(f"/manage/campaigns/{campaign.pk}/autointerp/start/", follow=True)
    text = response.content.decode()
    assert "Skipped" in text and "dashboards" in text
    assert Job.objects.filter(kind=JobKind.AUTOINTERP).count() == 2  # domain only
