"""Which item a labeller gets next: small named stages, tried in order, each recorded as the reason.

1. `own_held_lease`: the labeller already holds an item (opened, not submitted): give it back, lease renewed.
2. (housekeeping) expired leases are released (marked expired) so their slots return to the pool.
3. `closest_to_completion`: items others have started (most judgments first) that still have a free slot.
4. `fresh`: untouched items, in the labeller's own stable shuffled order.

Limits live in the database: the item row is locked with `select_for_update(skip_locked=True)` (a
concurrent labeller skips it and takes the next one), the slot counter is bumped with a conditional
UPDATE guarded by the `item_slots_at_most_k` check constraint, (item, labeller) is unique, and a
labeller holds at most one item per campaign (`assignment_one_held_per_labeller`).

No scanning: a labeller cannot page through a campaign to sort items before judging them. They hold one
item at a time, a skipped item is gone for them (its page answers 404), and a campaign may cap skips per
labeller; skips of one labeller are serialised on their membership row, so the cap holds under
concurrent requests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Exists, ExpressionWrapper, F, OuterRef, QuerySet, Value
from django.utils import timezone

from labelsite.models import SHUFFLE_PRIME, Assignment, Campaign, Item
from labelsite.services import LabelConflict, LabelError, LabelForbidden


@dataclass(frozen=True)
class StageContext:
    campaign: Campaign
    labeller_id: int
    now: object  # datetime


Stage = Callable[[StageContext], "Assignment | None"]


def labeller_permutation(*, campaign_id: int, labeller_id: int) -> tuple[int, int]:
    """(a, b) of the labeller's permutation x -> (a*x + b) mod P; keyed by SECRET_KEY so nobody can predict it."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"order:{campaign_id}:{labeller_id}".encode(), hashlib.sha256
    ).digest()
    a = 1 + int.from_bytes(digest[:8], "big") % (SHUFFLE_PRIME - 1)
    b = int.from_bytes(digest[8:16], "big") % SHUFFLE_PRIME
    return a, b


def labeller_order(*, campaign_id: int, labeller_id: int) -> ExpressionWrapper:
    """A SQL expression giving the labeller's stable shuffled rank of an item (fits in 63 bits)."""
    a, b = labeller_permutation(campaign_id=campaign_id, labeller_id=labeller_id)
    return ExpressionWrapper((F("shuffle_key") * Value(a) + Value(b)) % Value(SHUFFLE_PRIME), BigIntegerField())


def _available(ctx: StageContext) -> QuerySet[Item]:
    """Items with a free slot that this labeller never held, judged, skipped or let expire."""
    mine = Assignment.objects.filter(item=OuterRef("pk"), labeller_id=ctx.labeller_id)
    return (
        Item.objects.filter(campaign=ctx.campaign, slots_taken__lt=ctx.campaign.overlap)
        .exclude(Exists(mine))
        .annotate(rank=labeller_order(campaign_id=ctx.campaign.pk, labeller_id=ctx.labeller_id))
    )


def _claim(ctx: StageContext, candidates: QuerySet[Item], reason: str) -> Assignment | None:
    """Lock the first candidate nobody else is locking, take one of its slots, record the lease."""
    for _attempt in range(5):
        with transaction.atomic():
            item = candidates.select_for_update(skip_locked=True, of=("self",)).only("pk").first()
            if item is None:
                return None
            taken = Item.objects.filter(pk=item.pk, slots_taken__lt=F("overlap")).update(
                slots_taken=F("slots_taken") + 1
            )
            if not taken:  # filled between our read and our lock (SQLite has no row locks): try again
                continue
            try:
                with transaction.atomic():
                    return Assignment.objects.create(
                        campaign=ctx.campaign,
                        item_id=item.pk,
                        labeller_id=ctx.labeller_id,
                        reason=reason,
                        leased_at=ctx.now,
                        expires_at=ctx.now + timedelta(seconds=ctx.campaign.lease_seconds),
                    )
            except IntegrityError:
                # A parallel request of the same labeller claimed an item first (one held item each):
                # give the slot back and hand out that one.
                Item.objects.filter(pk=item.pk).update(slots_taken=F("slots_taken") - 1)
        return stage_own_held_lease(ctx)
    return None


def stage_own_held_lease(ctx: StageContext) -> Assignment | None:
    held = (
        Assignment.objects.filter(campaign=ctx.campaign, labeller_id=ctx.labeller_id, status=Assignment.Status.HELD)
        .order_by("leased_at", "pk")
        .first()
    )
    if held is None:
        return None
    held.expires_at = ctx.now + timedelta(seconds=ctx.campaign.lease_seconds)
    held.save(update_fields=["expires_at"])
    return held


def stage_closest_to_completion(ctx: StageContext) -> Assignment | None:
    candidates = _available(ctx).filter(judgment_count__gt=0).order_by("-judgment_count", "rank")
    return _claim(ctx, candidates, "closest_to_completion")


def stage_fresh(ctx: StageContext) -> Assignment | None:
    return _claim(ctx, _available(ctx).filter(judgment_count=0).order_by("-slots_taken", "rank"), "fresh")


STAGES: tuple[tuple[str, Stage], ...] = (
    ("own_held_lease", stage_own_held_lease),
    ("closest_to_completion", stage_closest_to_completion),
    ("fresh", stage_fresh),
)


def leases_release_expired(*, campaign: Campaign, now=None) -> int:
    """Give back the slots of leases that ran out (items locked first, as everywhere)."""
    from labelsite.services.campaigns import items_recount_slots

    now = now or timezone.now()
    expired = Assignment.objects.filter(campaign=campaign, status=Assignment.Status.HELD, expires_at__lt=now)
    if not expired.exists():
        return 0
    with transaction.atomic():
        item_ids = list(
            Item.objects.select_for_update(skip_locked=True)
            .filter(pk__in=expired.values("item_id"))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        released = expired.filter(item_id__in=item_ids).update(status=Assignment.Status.EXPIRED)
        items_recount_slots(item_ids=item_ids)
    return released


def assignment_next(*, campaign_id: int, labeller) -> Assignment | None:
    """The labeller's next item (a held lease), or None when nothing is left for them."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or not campaign.labellers.filter(pk=labeller.pk).exists():
        raise LabelForbidden("You are not a labeller of this campaign.")
    if campaign.status != Campaign.Status.OPEN:
        raise LabelConflict(f"This campaign is {campaign.get_status_display().lower()}; labelling is not possible now.")
    ctx = StageContext(campaign=campaign, labeller_id=labeller.pk, now=timezone.now())
    held = stage_own_held_lease(ctx)
    if held is not None:
        return held
    leases_release_expired(campaign=campaign, now=ctx.now)
    for _name, stage in STAGES[1:]:
        picked = stage(ctx)
        if picked is not None:
            return picked
    return None


def assignment_skip(*, item_code: str, labeller, reason: str) -> Assignment:
    """Skip a held item (with a reason): its slot goes back to others and it never comes back to this labeller.

    Refused once the labeller has used the campaign's `max_skips`; the membership row is locked first,
    so parallel skips of one labeller are counted one after the other.
    """
    reason = reason.strip()
    if not reason:
        raise LabelError("Say briefly why you skip this item.")
    with transaction.atomic():
        campaign_id = Item.objects.filter(code=item_code).values_list("campaign_id", flat=True).first()
        membership = Campaign.labellers.through.objects.select_for_update().filter(
            campaign_id=campaign_id, user_id=labeller.pk
        )
        if campaign_id is None or not list(membership.values_list("pk", flat=True)):
            raise LabelError("This item is not assigned to you.")
        item = Item.objects.select_for_update(of=("self",)).select_related("campaign").get(code=item_code)
        assignment = Assignment.objects.select_for_update().filter(item=item, labeller=labeller).first()
        if assignment is None:
            raise LabelConflict("This item is not assigned to you.")
        if item.campaign.status != Campaign.Status.OPEN:
            raise LabelConflict("This campaign is not open.")
        if assignment.status == Assignment.Status.DONE:
            raise LabelConflict("You already judged this item; you can revise your judgment instead.")
        if assignment.status == Assignment.Status.SKIPPED:
            raise LabelConflict("You already skipped this item.")
        cap = item.campaign.max_skips
        if cap is not None:
            used = Assignment.objects.filter(
                campaign_id=campaign_id, labeller=labeller, status=Assignment.Status.SKIPPED
            ).count()
            if used >= cap:
                allowance = f"You have used all {cap} skip{'' if cap == 1 else 's'} of" if cap else "No skips in"
                raise LabelConflict(
                    f"{allowance} this campaign; please judge this item (a low score and a comment are fine)."
                )
        if assignment.status == Assignment.Status.HELD:
            Item.objects.filter(pk=item.pk).update(slots_taken=F("slots_taken") - 1)
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = reason[:500]
        assignment.save(update_fields=["status", "skip_reason"])
    return assignment


def assignment_next_code(*, campaign_id: int, labeller) -> str | None:
    """Like `assignment_next`, but only the blind item code leaves (what labeller-facing views need)."""
    assignment = assignment_next(campaign_id=campaign_id, labeller=labeller)
    if assignment is None:
        return None
    return Item.objects.values_list("code", flat=True).get(pk=assignment.item_id)
