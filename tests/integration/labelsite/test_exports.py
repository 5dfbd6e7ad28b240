"""Progress figures, the CSV guard against spreadsheet formulas, and the hidden mapping on admin pages.
(Results, exports and agreement against independent computations: test_results.py.)"""

from __future__ import annotations

import csv
import io
import random
import statistics

import pytest
from django.urls import reverse

from labelsite.models import Item, Judgment
from labelsite.selectors.admin import campaign_progress
from labelsite.services.assignment import assignment_next
from labelsite.services.campaigns import campaign_close
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db


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


def test_progress_reports_median_time_per_labeller(judged, bob):
    progress = campaign_progress(campaign=judged)
    assert progress["items"] == 10 and progress["items_complete"] == 10 and progress["percent"] == 100
    bob_row = next(r for r in progress["labellers"] if r["username"] == "bob")
    times = list(Judgment.objects.filter(labeller=bob).values_list("time_spent_ms", flat=True))
    assert bob_row["done"] == 10
    assert bob_row["median_time_s"] == round(statistics.median(times) / 1000, 1)


def test_hidden_mapping_stays_off_the_admin_pages_until_closed(admin_client, registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], hide_mapping_until_closed=True))
    items = admin_client.get(reverse("manage-api:items", args=[campaign.pk])).json()["results"]
    assert items and all(set(row) == {"code", "kind", "judgment_count", "slots_taken", "overlap"} for row in items)
    detail = admin_client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert registry.saes[0].name not in detail
    results = admin_client.get(reverse("manage:campaign-results", args=[campaign.pk]))
    assert results.status_code == 302 and results["Location"] == reverse("manage:campaign", args=[campaign.pk])
    campaign_close(campaign_id=campaign.pk)
    assert registry.saes[0].name in admin_client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert (
        registry.saes[0].name
        in admin_client.get(reverse("manage:campaign-results", args=[campaign.pk])).content.decode()
    )


def test_csv_export_defuses_spreadsheet_formulas(admin_client, open_campaign, bob):
    a = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    code = Item.objects.get(pk=a.item_id).code
    judgment_submit(
        item_code=code,
        labeller=bob,
        answers=dict(domain_explanation="=HYPERLINK(1)", domain_score=1, general_score=0),
    )
    response = admin_client.get(reverse("manage-api:judgments-export", args=[open_campaign.pk, "csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0]["domain_explanation"] == "'=HYPERLINK(1)"
    assert Judgment.objects.get().answers["domain_explanation"] == "=HYPERLINK(1)"  # stored as typed
