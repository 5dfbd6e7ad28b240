"""Submitting, revising, double submits, late submits after a lease expired, and rubric checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labelsite.models import Assignment, Item, Judgment
from labelsite.services import LabelError
from labelsite.services.assignment import assignment_next, leases_release_expired
from labelsite.services.campaigns import campaign_close
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db

ANSWERS = dict(domain_explanation=" base cases of induction ", domain_score=3, general_explanation="", general_score=0)


def _take(campaign, user) -> str:
    a = assignment_next(campaign_id=campaign.pk, labeller=user)
    return Item.objects.get(pk=a.item_id).code


def test_submit_records_the_answers_and_counts_once(open_campaign, bob):
    code = _take(open_campaign, bob)
    judgment, changed = judgment_submit(item_code=code, labeller=bob, answers=ANSWERS, time_spent_ms=4200)
    assert changed
    assert judgment.answers["domain_explanation"] == "base cases of induction"
    assert (judgment.answers["domain_score"], judgment.answers["general_score"], judgment.time_spent_ms) == (3, 0, 4200)
    item = Item.objects.get(code=code)
    assert (item.judgment_count, item.slots_taken) == (1, 1)
    assert Assignment.objects.get(item=item, labeller=bob).status == Assignment.Status.DONE


def test_double_submit_is_idempotent(open_campaign, bob):
    code = _take(open_campaign, bob)
    first, _ = judgment_submit(item_code=code, labeller=bob, answers=ANSWERS, time_spent_ms=1000)
    second, changed = judgment_submit(item_code=code, labeller=bob, answers=ANSWERS, time_spent_ms=1000)
    assert not changed
    assert first.pk == second.pk
    assert Judgment.objects.count() == 1
    assert Item.objects.get(code=code).judgment_count == 1
    assert Judgment.objects.get().time_spent_ms == 1000 and Judgment.objects.get().revisions == 0


def test_revision_changes_answers_until_the_campaign_closes(open_campaign, bob):
    code = _take(open_campaign, bob)
    judgment_submit(item_code=code, labeller=bob, answers=ANSWERS, time_spent_ms=1000)
    revised = dict(domain_explanation="induction", domain_score=2, general_explanation="lists", general_score=1)
    judgment, changed = judgment_submit(item_code=code, labeller=bob, answers=revised, time_spent_ms=500)
    assert changed and judgment.revisions == 1 and judgment.time_spent_ms == 1500
    assert Item.objects.get(code=code).judgment_count == 1
    campaign_close(campaign_id=open_campaign.pk)
    with pytest.raises(LabelError, match="closed"):
        judgment_submit(item_code=code, labeller=bob, answers=ANSWERS)
    assert Judgment.objects.get().answers["domain_score"] == 2


def test_scores_must_come_from_the_rubric_and_enabled_questions_need_one(open_campaign, bob):
    code = _take(open_campaign, bob)
    with pytest.raises(LabelError, match="not a score"):
        judgment_submit(item_code=code, labeller=bob, answers=dict(domain_score=7, general_score=1))
    with pytest.raises(LabelError, match="general examples"):
        judgment_submit(item_code=code, labeller=bob, answers=dict(domain_score=1))
    assert not Judgment.objects.exists()


def test_disabled_questions_are_not_stored(registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], questions=["domain"]))
    code = _take(campaign, bob)
    judgment, _ = judgment_submit(
        item_code=code, labeller=bob, answers=dict(domain_score=1, general_score=3, nice=True, comment="x")
    )
    # The optional guess of the source (asked with two sources) is stored unanswered; nothing of the other groups.
    assert judgment.answers == {"domain_explanation": "", "domain_score": 1, "source_guess": None}


def test_late_submit_after_expiry_is_kept_when_a_slot_is_free(open_campaign, bob):
    code = _take(open_campaign, bob)
    Assignment.objects.filter(labeller=bob).update(expires_at=timezone.now() - timedelta(minutes=1))
    leases_release_expired(campaign=open_campaign)
    judgment, changed = judgment_submit(item_code=code, labeller=bob, answers=ANSWERS)
    assert changed
    item = Item.objects.get(code=code)
    assert (item.judgment_count, item.slots_taken) == (1, 1)


def test_late_submit_is_refused_clearly_when_others_completed_the_item(open_campaign, bob, carol):
    code = _take(open_campaign, bob)
    Assignment.objects.filter(labeller=bob).update(expires_at=timezone.now() - timedelta(minutes=1))
    leases_release_expired(campaign=open_campaign)
    # carol now gets items; make her take bob's old item specifically
    now = timezone.now()
    Assignment.objects.create(
        campaign=open_campaign, item=Item.objects.get(code=code), labeller=carol, leased_at=now, expires_at=now
    )
    Item.objects.filter(code=code).update(slots_taken=1)
    judgment_submit(item_code=code, labeller=carol, answers=ANSWERS)
    with pytest.raises(LabelError, match="ran out and others have since completed it"):
        judgment_submit(item_code=code, labeller=bob, answers=ANSWERS)
    assert Judgment.objects.filter(item__code=code).count() == 1


def test_nobody_outside_the_campaign_can_submit(open_campaign, bob, alice):
    code = _take(open_campaign, bob)
    with pytest.raises(LabelError, match="not a labeller"):
        judgment_submit(item_code=code, labeller=alice, answers=ANSWERS)
