"""Score breakdowns per SAE, method and labeller; agreement figures; CSV/JSON exports; hidden mapping."""

from __future__ import annotations

import csv
import io
import random
import statistics

import pytest
from django.urls import reverse

from labelsite.models import Item, Judgment
from labelsite.selectors.admin import agreement, campaign_progress, krippendorff_alpha_interval, score_summary
from labelsite.services.assignment import assignment_next
from labelsite.services.campaigns import campaign_close
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db


def test_krippendorff_alpha_matches_the_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, missing values;
    # interval alpha = 0.849. Unit 12 has one value and is not pairable.
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
             [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]  # fmt: skip
    assert krippendorff_alpha_interval(units) == pytest.approx(0.849, abs=0.0005)
    # by hand: D_o = 10/6, D_e = 34/30
    assert krippendorff_alpha_interval([[1, 2], [2, 2], [3, 1]]) == pytest.approx(1 - (10 / 6) / (34 / 30), abs=1e-4)
    assert krippendorff_alpha_interval([[1, 1], [2, 2], [3, 3]]) == 1.0


def test_pairwise_agreement_by_hand():
    figures = agreement({"a": [1, 1], "b": [2, 3], "c": [0, 3, 3], "d": [2]})
    # pairs: (1,1) (2,3) (0,3) (0,3) (3,3)
    assert figures["pairs"] == 5 and figures["items"] == 3
    assert figures["exact"] == pytest.approx(2 / 5)
    assert figures["within_one"] == pytest.approx(3 / 5)


@pytest.fixture
def judged(registry, bob, carol):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol], overlap=2, features=5))
    rng = random.Random(3)
    for user in (bob, carol):
        while (a := assignment_next(campaign_id=campaign.pk, labeller=user)) is not None:
            answers = dict(domain_score=rng.randint(0, 3), general_score=rng.randint(0, 3), nice=rng.random() < 0.3)
            judgment_submit(
                item_code=Item.objects.get(pk=a.item_id).code,
                labeller=user,
                answers=answers,
                time_spent_ms=rng.randint(1000, 9000),
            )
    return campaign


def test_summary_per_sae_matches_a_brute_force_count(judged, registry):
    summary = score_summary(campaign=judged)
    for sae in registry.saes:
        rows = [
            (j.answers["domain_score"], j.answers["general_score"], j.answers["nice"])
            for j in Judgment.objects.filter(item__source__sae=sae)
        ]
        got = summary["per_sae"][sae.name]
        assert got["judgments"] == len(rows) == 10
        assert got["items"] == 5
        assert got["nice"] == sum(n for _, _, n in rows)
        assert got["domain_score"]["mean"] == pytest.approx(statistics.fmean(d for d, _, _ in rows), abs=1e-3)
        assert got["general_score"]["counts"] == {str(s): sum(g == s for _, g, _ in rows) for s in range(4)}
        assert summary["per_method"][sae.method]["judgments"] == 10
    assert set(summary["per_labeller"]) == {"bob", "carol"}
    assert summary["agreement"]["domain_score"]["items"] == 10
    assert summary["agreement"]["domain_score"]["pairs"] == 10


def test_progress_reports_median_time_per_labeller(judged, bob):
    progress = campaign_progress(campaign=judged)
    assert progress["items"] == 10 and progress["items_complete"] == 10 and progress["percent"] == 100
    bob_row = next(r for r in progress["labellers"] if r["username"] == "bob")
    times = list(Judgment.objects.filter(labeller=bob).values_list("time_spent_ms", flat=True))
    assert bob_row["done"] == 10
    assert bob_row["median_time_s"] == round(statistics.median(times) / 1000, 1)


def test_csv_and_json_exports(admin_client, judged):
    response = admin_client.get(reverse("manage:campaign-export-csv", args=[judged.pk]))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 20
    assert {r["method"] for r in rows} == {"direct", "ssae"}
    assert sorted(int(r["domain_score"]) for r in rows) == sorted(
        j.answers["domain_score"] for j in Judgment.objects.all()
    )
    summary = admin_client.get(reverse("manage:campaign-export-json", args=[judged.pk])).json()
    assert summary["overlap"] == 2 and "agreement" in summary


def test_hidden_mapping_is_refused_to_admins_until_closed(admin_client, registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], hide_mapping_until_closed=True))
    for name in (
        "manage:campaign-export-csv",
        "manage:campaign-export-json",
        "manage-api:summary",
        "manage-api:judgments",
    ):
        response = admin_client.get(reverse(name, args=[campaign.pk]))
        assert response.status_code == 409
        assert "until it is closed" in response.content.decode()
    items = admin_client.get(reverse("manage-api:items", args=[campaign.pk])).json()["results"]
    assert items and all(set(row) == {"code", "judgment_count", "slots_taken"} for row in items)
    detail = admin_client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert registry.saes[0].name not in detail
    campaign_close(campaign_id=campaign.pk)
    assert admin_client.get(reverse("manage-api:summary", args=[campaign.pk])).status_code == 200
    assert registry.saes[0].name in admin_client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()


def test_csv_export_defuses_spreadsheet_formulas(admin_client, open_campaign, bob):
    a = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    code = Item.objects.get(pk=a.item_id).code
    judgment_submit(
        item_code=code,
        labeller=bob,
        answers=dict(domain_explanation="=HYPERLINK(1)", domain_score=1, general_score=0),
    )
    rows = list(
        csv.DictReader(
            io.StringIO(
                admin_client.get(reverse("manage:campaign-export-csv", args=[open_campaign.pk])).content.decode()
            )
        )
    )
    assert rows[0]["domain_explanation"] == "'=HYPERLINK(1)"
    assert Judgment.objects.get().answers["domain_explanation"] == "=HYPERLINK(1)"  # stored as typed
