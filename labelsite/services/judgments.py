"""Submitting and revising judgments. A retried (double) submit changes nothing the second time."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labelsite.models import PANEL_HTML_FIELDS, Assignment, Campaign, Item, Judgment, JudgmentRevision
from labelsite.questions import QuestionError, answers_clean
from labelsite.services import LabelConflict, LabelError, LabelForbidden, LabelNotFound

MAX_TIME_SPENT_MS = 6 * 3600 * 1000  # a tab left open overnight should not skew the medians


def answers_validate(*, campaign: Campaign, answers: dict) -> dict:
    """Check the answers against the campaign's questions; return what to store (one entry per question)."""
    try:
        return answers_clean(campaign.questions, answers)
    except QuestionError as exc:
        raise LabelError(str(exc)) from None


def judgment_submit(
    *, item_code: str, labeller, answers: dict, time_spent_ms: int = 0, panel_order: str = ""
) -> tuple[Judgment, bool]:
    """Record (or revise) the labeller's judgment of an item. Returns (judgment, changed).

    The first submit uses the labeller's lease (or, if it expired and was released, a free slot).
    Submitting the same answers again changes nothing; different answers revise the judgment while
    the campaign is open.
    """
    time_spent_ms = max(0, min(int(time_spent_ms or 0), MAX_TIME_SPENT_MS))
    with transaction.atomic():
        item = (  # the panel HTML (tens of KB) is not needed to record a judgment
            Item.objects.select_for_update()
            .select_related("campaign")
            .defer(*PANEL_HTML_FIELDS)
            .filter(code=item_code)
            .first()
        )
        if item is None:
            raise LabelNotFound("This item does not exist.")
        campaign = item.campaign
        if not campaign.labellers.filter(pk=labeller.pk).exists():
            raise LabelForbidden("You are not a labeller of this campaign.")
        if campaign.status != Campaign.Status.OPEN:
            raise LabelConflict("This campaign is closed; judgments can no longer be changed.")
        cleaned = answers_validate(campaign=campaign, answers=answers)
        existing = Judgment.objects.select_for_update().filter(item=item, labeller=labeller).first()
        if existing is not None:
            if existing.answers == cleaned:
                return existing, False
            JudgmentRevision.objects.create(  # the earlier version is kept, with when it was saved
                judgment=existing,
                version=existing.revisions,
                answers=existing.answers,
                time_spent_ms=existing.time_spent_ms,
                saved_at=existing.updated_at,
            )
            existing.answers = cleaned
            existing.revisions += 1
            existing.time_spent_ms = min(existing.time_spent_ms + time_spent_ms, MAX_TIME_SPENT_MS)
            existing.save()
            return existing, True
        assignment = Assignment.objects.select_for_update().filter(item=item, labeller=labeller).first()
        if (
            assignment is None
            and item.kind == Item.Kind.REPEAT
            and not Judgment.objects.filter(item_id=item.repeat_of_id, labeller=labeller).exists()
        ):  # a repeat is only ever for the labellers who judged its original
            raise LabelConflict("This item is not assigned to you.")
        if assignment is None or assignment.status in (Assignment.Status.SKIPPED, Assignment.Status.EXPIRED):
            # The lease ran out and was released (or the item was skipped): take a slot if one is free.
            if not Item.objects.filter(pk=item.pk, slots_taken__lt=F("overlap")).update(
                slots_taken=F("slots_taken") + 1
            ):
                raise LabelConflict(
                    "Your time on this item ran out and others have since completed it; "
                    "your answers were not recorded. Please take the next item."
                )
            now = timezone.now()
            if assignment is None:
                assignment = Assignment(
                    campaign=campaign, item=item, labeller=labeller, reason="late_submit", leased_at=now
                )
            assignment.expires_at = now + timedelta(seconds=campaign.lease_seconds)
        assignment.status = Assignment.Status.DONE
        assignment.save()
        judgment = Judgment.objects.create(
            item=item,
            campaign=campaign,
            labeller=labeller,
            panel_order=panel_order[:20],
            time_spent_ms=time_spent_ms,
            answers=cleaned,
        )
        Item.objects.filter(pk=item.pk).update(judgment_count=F("judgment_count") + 1)
    return judgment, True
