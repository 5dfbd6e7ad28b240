"""Prediction-powered results from stored judge answers and judgments: the right features in the right samples,
the API and the results page, hidden with the mapping."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client

from compute.models import Job
from labelsite import statistics as st
from labelsite.models import Campaign, Item, JudgeAnswer, Judgment
from labelsite.selectors.judge_results import judge_results
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(registry, bob, carol):
    """Two sources, 8 labelled features each (bob and carol judge all but the last two), 12 judge-only
    features each; the judge scores every feature: the humans' score plus a source-dependent bias, with noise."""
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=[bob, carol], features=8, overlap=2, judge_only_features=12)
    )
    rng = np.random.default_rng(3)
    human: dict[int, float] = {}
    judge: dict[int, int] = {}
    items = list(Item.objects.filter(campaign=campaign).order_by("pk"))
    per_source_regular: dict[int, int] = {}
    for item in items:
        latent = int(rng.integers(0, 4))
        judge[item.pk] = int(np.clip(latent + (item.source_id % 2) + rng.integers(-1, 2), 0, 3))
        JudgeAnswer.objects.create(
            campaign=campaign, item=item, answers={"domain_score": judge[item.pk], "general_score": 1}, model="m"
        )
        if item.kind != Item.Kind.REGULAR:
            continue
        per_source_regular[item.source_id] = per_source_regular.get(item.source_id, 0) + 1
        if per_source_regular[item.source_id] > 6:
            continue  # not judged yet: the judge's score counts as unlabelled
        scores = [latent, int(np.clip(latent + rng.integers(-1, 2), 0, 3))]
        for labeller, score in zip((bob, carol), scores, strict=True):
            Judgment.objects.create(
                item=item, campaign=campaign, labeller=labeller, answers={"domain_score": score, "general_score": 2}
            )
        human[item.pk] = float(np.mean(scores))
    return campaign, human, judge, items


def _samples(source_id, human, judge, items):
    mine = [i.pk for i in items if i.source_id == source_id]
    labelled = [pk for pk in mine if pk in human]
    return (
        [human[pk] for pk in labelled],
        [judge[pk] for pk in labelled],
        [judge[pk] for pk in mine if pk not in human],
    )


def test_ppi_per_source_and_difference_from_the_right_features(judged):
    campaign, human, judge, items = judged
    results = judge_results(campaign=campaign)
    assert results["judged_items"] == len(items) == 2 * (8 + 12) and results["judge_only_items"] == 24
    section = next(s for s in results["scores"] if s["key"] == "domain_score")
    samples = {}
    for row in section["per_source"]:
        samples[row["source_id"]] = _samples(row["source_id"], human, judge, items)
        expected = st.ppi_mean(*samples[row["source_id"]], small_sample=True)
        assert row["n"] == 6 and row["n_judge_only"] == 14  # 2 regular features not judged yet + 12 judge-only
        assert row["mean"] == pytest.approx(expected.mean, abs=1e-4)
        assert (row["low"], row["high"]) == pytest.approx((expected.low, expected.high), abs=1e-4)
        assert row["human_mean"] == pytest.approx(np.mean(samples[row["source_id"]][0]), abs=1e-4)
        assert row["judge_mean"] == pytest.approx(
            np.mean([judge[i.pk] for i in items if i.source_id == row["source_id"]]), abs=1e-4
        )
        assert row["agreement"]["spearman"]["n"] == 6
    a, b = (r["source_id"] for r in section["per_source"])
    (diff,) = section["differences"]
    expected = st.ppi_difference(samples[a], samples[b], small_sample=True)
    assert diff["mean"] == pytest.approx(expected.mean, abs=1e-4)
    assert (diff["low"], diff["high"]) == pytest.approx((expected.low, expected.high), abs=1e-4)
    assert diff["n"] == 12
    # the general score: every labeller said 2, the judge 1; a constant judge gets no weight
    general = next(s for s in results["scores"] if s["key"] == "general_score")
    for row in general["per_source"]:
        assert row["lam"] == 0.0 and row["mean"] == pytest.approx(2.0) and row["judge_mean"] == pytest.approx(1.0)


def test_api_page_and_hidden_mapping(judged, admin_client, bob):
    campaign, *_ = judged
    response = admin_client.get(f"/api/manage/campaigns/{campaign.pk}/judge/")
    assert response.status_code == 200
    assert response.json()["scores"][0]["per_source"][0]["n"] == 6
    page = admin_client.get(f"/manage/campaigns/{campaign.pk}/results/").content.decode()
    assert "prediction-powered results" in page and "Run the LLM judge" in page
    row = response.json()["scores"][0]["per_source"][0]
    assert f"<strong>{row['mean']}</strong>" in page

    url = f"/api/manage/campaigns/{campaign.pk}/judge/"
    refused = admin_client.post(url, {"batch_size": 0}, content_type="application/json")
    assert refused.status_code == 400 and "batch_size" in refused.json()["detail"]
    queued = admin_client.post(url, {"batch_size": 5}, content_type="application/json")
    assert queued.status_code == 202 and Job.objects.get(pk=queued.json()["job_id"]).params["batch_size"] == 5
    labeller = Client()
    labeller.force_login(bob)
    assert labeller.get(f"/api/manage/campaigns/{campaign.pk}/judge/").status_code == 403

    Campaign.objects.filter(pk=campaign.pk).update(hide_mapping_until_closed=True)
    assert admin_client.get(f"/api/manage/campaigns/{campaign.pk}/judge/").status_code == 409


def test_start_view_queues_the_judge_and_says_so(judged, admin_client):
    campaign, *_ = judged
    response = admin_client.post(f"/manage/campaigns/{campaign.pk}/judge/", follow=True)
    assert "The LLM judge is answering" in response.content.decode()
    assert Job.objects.filter(kind="judge_campaign").count() == 1


def test_no_judge_answers_yet(open_campaign, admin_client):
    results = judge_results(campaign=open_campaign)
    assert results["judged_items"] == 0 and results["scores"] == []
    page = admin_client.get(f"/manage/campaigns/{open_campaign.pk}/results/").content.decode()
    assert "has not answered this campaign yet" in page


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_carry_the_judges_answers_beside_the_labellers(judged, admin_client, fmt):
    import io
    import json

    import pandas as pd

    campaign, human, judge, items = judged
    response = admin_client.get(f"/api/manage/campaigns/{campaign.pk}/judgments.{fmt}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    if fmt == "csv":
        frame = pd.read_csv(io.BytesIO(body))
    elif fmt == "jsonl":
        frame = pd.DataFrame([json.loads(line) for line in body.decode().splitlines()])
    else:
        frame = pd.read_parquet(io.BytesIO(body))
    judge_rows = frame[frame["status"] == "judge"]
    assert len(judge_rows) == len(items) and set(judge_rows["labeller"]) == {"judge:m"}
    assert len(frame[frame["status"] == "judged"]) == 2 * len(human)
    codes = {i.code: i.pk for i in items}
    for _, row in judge_rows.iterrows():
        assert int(row["domain_score"]) == judge[codes[row["item_code"]]]
    assert set(judge_rows["item_kind"]) == {"regular", "judge"}


def test_plan_campaign_measures_a_pilot_and_its_judge(judged):
    import io
    import json

    from django.core.management import CommandError, call_command

    campaign, human, judge, _ = judged
    out = io.StringIO()
    call_command(
        "plan_campaign", "--pilot", str(campaign.pk), "--question", "domain_score", "--target-width", "0.5", stdout=out
    )
    plan = json.loads(out.getvalue())
    both = sorted(human)
    assert plan["measured"]["rho"] == pytest.approx(
        np.corrcoef([human[i] for i in both], [judge[i] for i in both])[0, 1]
    )
    assert plan["measured"]["rho_labellers"] == 2 and plan["measured"]["rho_features"] == 12
    assert plan["measured"]["pilot"]["features"] == 12 and plan["measured"]["pilot"]["labellers_per_feature"] == 2
    assert plan["inputs"]["feature_sd"] == plan["measured"]["pilot"]["feature_sd"]
    assert len(plan["needed"]) == 5 and plan["ppi_width"] <= plan["human_only_width"]
    with pytest.raises(CommandError, match="--rho"):
        call_command("plan_campaign", "--feature-sd", "0.8", "--labeller-sd", "0.6", stdout=io.StringIO())
    with pytest.raises(CommandError, match="not a score question"):
        call_command("plan_campaign", "--pilot", str(campaign.pk), "--question", "nice", stdout=io.StringIO())
    with pytest.raises(CommandError, match="between -1 and 1"):
        call_command("plan_campaign", "--feature-sd", "0.8", "--labeller-sd", "0.6", "--rho", "2", stdout=io.StringIO())


def test_campaign_form_planner_estimates_the_design(admin_client, registry, bob):
    form = admin_client.get("/manage/campaigns/new/").content.decode()
    assert 'id="planner"' in form and 'hx-post="/manage/campaigns/plan/"' in form and 'name="plan-rho"' in form
    data = {
        "features_per_sae": "50",
        "overlap": "2",
        "judge_only_features": "1000",
        "plan-rho": "0.7",
        "plan-feature_sd": "0.8",
        "plan-labeller_sd": "0.6",
        "plan-target_width": "0.4",
    }
    page = admin_client.post("/manage/campaigns/plan/", data).content.decode()
    # by hand: 2 z sqrt(2 (0.8² + 0.6²/2) / 50), and that times sqrt(1 - 0.7² · 1000/1050)
    z = 1.959963984540054
    human = 2 * z * np.sqrt(2 * (0.64 + 0.18) / 50)
    assert f"<strong>{round(human, 4)}</strong>" in page
    assert f"<strong>{round(human * np.sqrt(1 - 0.49 * 1000 / 1050), 4)}</strong>" in page
    assert page.count("<tr>") == 1 + 5  # the needed features for 1 to 5 labellers
    assert (
        "less than or equal to 1"
        in admin_client.post("/manage/campaigns/plan/", {**data, "plan-rho": "3"}).content.decode()
    )
    labeller = Client()
    labeller.force_login(bob)
    assert labeller.post("/manage/campaigns/plan/", data).status_code == 403
