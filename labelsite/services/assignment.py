"""Which item a labeller gets next: small named stages, tried in order, each recorded as the reason.

1. `own_held_lease`: the labeller already holds an item (opened, not submitted): give it back, lease renewed.
2. (housekeeping) expired leases are released (marked expired) so their slots return to the pool.
3. `repeat_due`: a repeat of an item this labeller judged, once enough of their other judgments came after it
   (REPEAT_MIN_GAP plus a spread that differs per repeat and labeller); nobody else is ever given it.
4. `gold_due`: a gold item whose place in the labeller's run has come (spread by the labeller's shuffle).
5. `closest_to_completion`: regular items others have started (most judgments first) with a free slot.
6. `fresh`: untouched regular items, in the labeller's own stable shuffled order.
7. `checks_left`: once no regular item is left for them, the labeller's remaining gold items and repeats
   (a repeat still never straight after its original).

Stages 3, 4 and 7 (quality control) cost no query in a campaign without repeats or gold items.

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
from django.db import IntegrityError, connection, transaction
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from labelsite.models import SHUFFLE_PRIME, Assignment, Campaign, Item, Judgment
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


REPEAT_MIN_GAP = 3  # at least this many of the labeller's other judgments between an item and its repeat
REPEAT_GAP_SPREAD = 8  # ... and up to REPEAT_MIN_GAP + REPEAT_GAP_SPREAD - 1, so repeats come at no fixed distance


def _never_mine(ctx: StageContext, items: QuerySet[Item]) -> QuerySet[Item]:
    """Those of `items` this labeller never held, judged, skipped or let expire, with their shuffled `rank`."""
    # NOT IN over the labeller's own (few) items: read once, not probed per candidate as NOT EXISTS is on SQLite.
    mine = Assignment.objects.filter(campaign=ctx.campaign, labeller_id=ctx.labeller_id).values("item_id")
    return items.exclude(pk__in=mine).annotate(
        rank=labeller_order(campaign_id=ctx.campaign.pk, labeller_id=ctx.labeller_id)
    )


def _available(ctx: StageContext) -> QuerySet[Item]:
    """Regular items with a free slot that this labeller never held, judged, skipped or let expire."""
    return _never_mine(
        ctx, Item.objects.filter(campaign=ctx.campaign, kind=Item.Kind.REGULAR, slots_taken__lt=ctx.campaign.overlap)
    )


def _checks(ctx: StageContext) -> QuerySet[Item]:
    """Gold items and repeats with a free slot that this labeller never had; a repeat annotated with the
    labeller's judgment of its original (`original_judgment`, None if they have none) and how many of their
    judgments came after that one (`since`)."""
    mine = Judgment.objects.filter(campaign=ctx.campaign, labeller_id=ctx.labeller_id)
    later = (
        mine.filter(pk__gt=OuterRef("original_judgment"))
        .order_by()
        .values("labeller_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    items = Item.objects.filter(campaign=ctx.campaign, slots_taken__lt=F("overlap")).exclude(kind=Item.Kind.REGULAR)
    return _never_mine(ctx, items).annotate(
        original_judgment=Subquery(mine.filter(item_id=OuterRef("repeat_of_id")).values("pk")[:1]),
        since=Coalesce(Subquery(later), 0),
    )


def _repeat_after(gap) -> Q:
    """A repeat of an item the labeller judged, at least `gap` of their judgments after that one."""
    return Q(kind=Item.Kind.REPEAT, original_judgment__isnull=False, since__gte=gap)


CLAIM_SHORTLIST = 8  # candidates read before locking one; concurrent labellers rarely take them all


def _claim(ctx: StageContext, candidates: QuerySet[Item], reason: str) -> Assignment | None:
    """Lock the first candidate nobody else is locking, take one of its slots, record the lease."""
    # With row locks, the best few in order are read first, unlocked: a top-N sort. Locking the ordered set
    # directly sorts every candidate in full (the lock sits above the sort), which costs O(items) per request.
    # Without row locks (SQLite) the ordered query alone is the claim.
    row_locks = connection.features.has_select_for_update_skip_locked
    locking = candidates.select_for_update(skip_locked=True, of=("self",)).only("pk")
    for _attempt in range(5):
        shortlist = list(candidates.values_list("pk", flat=True)[:CLAIM_SHORTLIST]) if row_locks else None
        if shortlist == []:
            return None
        with transaction.atomic():
            item = locking.filter(pk__in=shortlist).first() if shortlist else locking.first()
            if item is None and shortlist and len(shortlist) == CLAIM_SHORTLIST:  # all taken concurrently: look on
                item = locking.first()
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


def stage_repeat_due(ctx: StageContext) -> Assignment | None:
    if not ctx.campaign.repeat_share:
        return None
    gap = Value(REPEAT_MIN_GAP) + F("rank") % Value(REPEAT_GAP_SPREAD)  # per repeat and labeller
    candidates = _checks(ctx).alias(gap=gap).filter(_repeat_after(F("gap"))).order_by("rank")
    return _claim(ctx, candidates, "repeat_due")


def stage_gold_due(ctx: StageContext) -> Assignment | None:
    """A gold item is due once the labeller has judged rank / P of the items they can expect to judge (their
    share of the regular items, plus the gold items), so gold items are spread over their whole run."""
    if not ctx.campaign.gold:
        return None
    campaign = ctx.campaign
    regular = Item.objects.filter(campaign=campaign, kind=Item.Kind.REGULAR).count()
    labellers = max(1, campaign.labellers.count())
    expected = -(-regular * campaign.overlap // labellers) + len(campaign.gold)
    judged = Judgment.objects.filter(campaign=campaign, labeller_id=ctx.labeller_id).count()
    due = _checks(ctx).filter(kind=Item.Kind.GOLD, rank__lte=judged * SHUFFLE_PRIME // max(1, expected))
    return _claim(ctx, due.order_by("rank"), "gold_due")


def stage_checks_left(ctx: StageContext) -> Assignment | None:
    if not (ctx.campaign.repeat_share or ctx.campaign.gold):
        return None
    candidates = _checks(ctx).filter(Q(kind=Item.Kind.GOLD) | _repeat_after(1)).order_by("rank")
    return _claim(ctx, candidates, "checks_left")


STAGES: tuple[tuple[str, Stage], ...] = (
    ("own_held_lease", stage_own_held_lease),
    ("repeat_due", stage_repeat_due),
    ("gold_due", stage_gold_due),
    ("closest_to_completion", stage_closest_to_completion),
    ("fresh", stage_fresh),
    ("checks_left", stage_checks_left),
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
            # an undone skip still counts: skipped_at stays set
            used = Assignment.objects.filter(
                Q(status=Assignment.Status.SKIPPED) | Q(skipped_at__isnull=False),
                campaign_id=campaign_id,
                labeller=labeller,
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
        assignment.skipped_at = timezone.now()
        assignment.save(update_fields=["status", "skip_reason", "skipped_at"])
    return assignment


def assignment_skip_undo(*, item_code: str, labeller) -> Assignment:
    """Take back a skip made less than `Assignment.SKIP_UNDO_S` ago: the item is the labeller's again, without a lease
    (like an expired one: their judgment counts if a slot is still free when they submit). The skip still
    counts against the campaign's `max_skips`."""
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update()
            .select_related("campaign")
            .filter(item__code=item_code, labeller=labeller, campaign__labellers=labeller)
            .first()
        )
        if assignment is None or assignment.status != Assignment.Status.SKIPPED:
            raise LabelConflict("You have not skipped this item, so there is no skip to undo.")
        if assignment.campaign.status != Campaign.Status.OPEN:
            raise LabelConflict("This campaign is not open.")
        if assignment.skip_undo_until() is None:
            raise LabelConflict(
                f"A skip can be undone only within {Assignment.SKIP_UNDO_S // 60} minutes; this item stays skipped."
            )
        assignment.status = Assignment.Status.EXPIRED
        assignment.save(update_fields=["status"])
    return assignment


def assignment_next_code(*, campaign_id: int, labeller) -> str | None:
    """Like `assignment_next`, but only the blind item code leaves (what labeller-facing views need)."""
    assignment = assignment_next(campaign_id=campaign_id, labeller=labeller)
    if assignment is None:
        return None
    return Item.objects.values_list("code", flat=True).get(pk=assignment.item_id)
