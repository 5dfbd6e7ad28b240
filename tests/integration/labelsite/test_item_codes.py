"""Item codes survive exports: never a formula character first; the CSV, the API and the JSON agree."""

from __future__ import annotations

import csv
import importlib
import io
import json
import re

import pytest
from django.apps import apps as django_apps
from django.urls import reverse

from labelsite.models import FORMULA_PREFIXES, Item, new_item_code
from labelsite.services.assignment import assignment_next
from labelsite.services.campaigns import campaign_close
from labelsite.services.judgments import judgment_submit

pytestmark = pytest.mark.django_db


def test_new_codes_never_start_with_a_formula_character():
    codes = [new_item_code() for _ in range(20_000)]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{11}", c) for c in codes)
    assert not any(c.startswith(FORMULA_PREFIXES) for c in codes)
    assert len(set(codes)) == len(codes)
    # the first character is drawn from all 62 letters and digits (~20000/62 each), not a few of them
    assert len({c[0] for c in codes}) == 62
    # later characters still include "-" and "_": only the first one is restricted
    assert any("-" in c[1:] for c in codes) and any("_" in c[1:] for c in codes)


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@"])
def test_codes_round_trip_through_csv_api_and_json(admin_client, open_campaign, bob, prefix):
    """A code starting with a formula character (made before codes avoided them) exports verbatim; free text
    starting with the same character is defused in the CSV only."""
    a = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    code = f"{prefix}Ab1-x_Yz9Q"
    Item.objects.filter(pk=a.item_id).update(code=code)
    text = f"{prefix}SUM(A1:A9)"
    judgment_submit(
        item_code=code, labeller=bob, answers={"domain_explanation": text, "domain_score": 1, "general_score": 0}
    )
    campaign_close(campaign_id=open_campaign.pk)

    def export(fmt: str) -> str:
        response = admin_client.get(reverse("manage-api:judgments-export", args=[open_campaign.pk, fmt]))
        return b"".join(response.streaming_content).decode()

    (row,) = csv.DictReader(io.StringIO(export("csv")))
    (line,) = [json.loads(x) for x in export("jsonl").splitlines() if x.strip()]
    api_rows = admin_client.get(reverse("manage-api:judgments", args=[open_campaign.pk])).json()["results"]
    api_items = admin_client.get(reverse("manage-api:items", args=[open_campaign.pk])).json()["results"]
    assert row["item_code"] == code == line["item_code"] == api_rows[0]["item_code"]
    assert code in {i["code"] for i in api_items}
    assert row["domain_explanation"] == "'" + text  # typed text is guarded ...
    assert line["domain_explanation"] == api_rows[0]["domain_explanation"] == text  # ... only in the CSV


def test_migration_gives_codes_starting_with_a_dash_a_new_code(open_campaign):
    migration = importlib.import_module("labelsite.migrations.0004_blinding")
    item = Item.objects.filter(campaign=open_campaign).first()
    Item.objects.filter(pk=item.pk).update(code="-legacyCode1")
    others = dict(Item.objects.exclude(pk=item.pk).values_list("pk", "code"))
    migration.recode_formula_codes(django_apps, None)
    new = Item.objects.get(pk=item.pk).code
    assert new != "-legacyCode1" and not new.startswith(FORMULA_PREFIXES)
    assert dict(Item.objects.exclude(pk=item.pk).values_list("pk", "code")) == others
