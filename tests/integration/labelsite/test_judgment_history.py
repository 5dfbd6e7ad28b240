"""Revising a judgment keeps every earlier version with when it was saved; the export can include them."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from labelsite.models import Item, Judgment, JudgmentRevision
from labelsite.services.assignment import assignment_next
from labelsite.services.judgments import judgment_submit

pytestmark = pytest.mark.django_db


def _answers(score: int, text: str) -> dict:
    return dict(domain_explanation=text, domain_score=score, general_explanation="", general_score=0)


def test_every_earlier_version_is_kept_and_exported_on_request(admin_client, open_campaign, bob):
    a = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    code = Item.objects.get(pk=a.item_id).code
    saved = []
    for score, text in ((1, "cats"), (2, "cats and dogs"), (3, "pets")):
        judgment, changed = judgment_submit(item_code=code, labeller=bob, answers=_answers(score, text))
        assert changed
        saved.append(Judgment.objects.get(pk=judgment.pk).updated_at)
    judgment_submit(item_code=code, labeller=bob, answers=_answers(3, "pets"))  # the same again: no new version

    judgment = Judgment.objects.get()
    assert judgment.revisions == 2 and judgment.answers["domain_score"] == 3
    history = list(JudgmentRevision.objects.filter(judgment=judgment).order_by("version"))
    assert [(h.version, h.answers["domain_score"], h.answers["domain_explanation"]) for h in history] == [
        (0, 1, "cats"),
        (1, 2, "cats and dogs"),
    ]
    assert [h.saved_at for h in history] == saved[:2]  # when each earlier version was saved
    assert history[0].replaced_at >= history[0].saved_at and history[1].replaced_at <= saved[2]

    url = reverse("manage-api:judgments-export", args=[open_campaign.pk, "csv"])
    plain = list(csv.DictReader(io.StringIO(b"".join(admin_client.get(url).streaming_content).decode())))
    assert [(r["status"], r["domain_score"]) for r in plain] == [("judged", "3")]
    full = list(csv.DictReader(io.StringIO(b"".join(admin_client.get(url + "?history=1").streaming_content).decode())))
    assert [(r["status"], r["domain_score"], r["revisions"], r["item_code"]) for r in full] == [
        ("judged", "3", "2", code),
        ("earlier version", "1", "0", code),
        ("earlier version", "2", "1", code),
    ]


def test_parquet_export_carries_the_earlier_versions(admin_client, open_campaign, bob):
    import pyarrow.parquet as pq

    a = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    code = Item.objects.get(pk=a.item_id).code
    judgment_submit(item_code=code, labeller=bob, answers=_answers(1, "cats"))
    judgment_submit(item_code=code, labeller=bob, answers=_answers(2, "dogs"))
    url = reverse("manage-api:judgments-export", args=[open_campaign.pk, "parquet"]) + "?history=1"
    table = pq.read_table(io.BytesIO(b"".join(admin_client.get(url).streaming_content)))
    assert list(zip(table["status"].to_pylist(), table["domain_score"].to_pylist(), strict=True)) == [
        ("judged", 2),
        ("earlier version", 1),
    ]
