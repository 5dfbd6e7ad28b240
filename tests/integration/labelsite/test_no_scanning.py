"""No scanning: one held item per labeller, a skipped item is gone for its labeller, skips can be capped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from labelsite.models import Assignment, Campaign, Item
from labelsite.services import LabelError
from labelsite.services.assignment import assignment_next, assignment_skip, leases_release_expired
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db


def _code(assignment: Assignment) -> str:
    return Item.objects.get(pk=assignment.item_id).code


def test_skipped_item_answers_404_to_its_labeller_everywhere(client, open_campaign, bob, carol):
    client.force_login(bob)
    response = client.post(reverse("label:next", args=[open_campaign.pk]))
    code = response["Location"].rstrip("/").rsplit("/", 1)[1]
    assert client.get(reverse("label:item", args=[code])).status_code == 200
    assert client.get(reverse("label-api:item", args=[code])).status_code == 200
    client.post(reverse("label:skip", args=[code]), {"reason": "cannot read it"})
    assert Assignment.objects.get(item__code=code, labeller=bob).status == Assignment.Status.SKIPPED
    # gone for bob: page, API, judging and skipping again all answer 404
    assert client.get(reverse("label:item", args=[code])).status_code == 404
    assert client.get(reverse("label-api:item", args=[code])).status_code == 404
    assert client.post(reverse("label:item", args=[code]), {"domain_score": 1}).status_code == 404
    assert client.post(reverse("label-api:judge", args=[code]), {"domain_score": 1}).status_code == 404
    assert client.post(reverse("label:skip", args=[code]), {"reason": "again"}).status_code == 404
    # and never served to him again, while another labeller can still have it
    served = []
    while (a := assignment_next(campaign_id=open_campaign.pk, labeller=bob)) is not None:
        served.append(_code(a))
        Assignment.objects.filter(pk=a.pk).update(status=Assignment.Status.DONE)
    assert code not in served and len(served) == 19
    assert _code(assignment_next(campaign_id=open_campaign.pk, labeller=carol)) == code  # the one free slot


def test_skipping_twice_through_the_service_is_refused(open_campaign, bob):
    code = _code(assignment_next(campaign_id=open_campaign.pk, labeller=bob))
    assignment_skip(item_code=code, labeller=bob, reason="no idea")
    with pytest.raises(LabelError, match="already skipped"):
        assignment_skip(item_code=code, labeller=bob, reason="no idea")
    assert Item.objects.get(code=code).slots_taken == 0  # the slot was given back once, not twice


def test_a_labeller_holds_one_item_at_a_time(open_campaign, bob):
    first = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    for _ in range(3):
        assert assignment_next(campaign_id=open_campaign.pk, labeller=bob).pk == first.pk
    assert Assignment.objects.filter(labeller=bob, status=Assignment.Status.HELD).count() == 1
    other = Item.objects.exclude(pk=first.item_id).first()
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():  # the database refuses a second held item
        Assignment.objects.create(campaign=open_campaign, item=other, labeller=bob, leased_at=now, expires_at=now)


def test_skip_cap_per_labeller(registry, bob, carol):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol], max_skips=2))
    for n in range(2):
        assignment_skip(
            item_code=_code(assignment_next(campaign_id=campaign.pk, labeller=bob)), labeller=bob, reason=f"{n}"
        )
    held = assignment_next(campaign_id=campaign.pk, labeller=bob)
    with pytest.raises(LabelError, match="used all 2 skips"):
        assignment_skip(item_code=_code(held), labeller=bob, reason="third")
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.HELD
    assert Assignment.objects.filter(labeller=bob, status=Assignment.Status.SKIPPED).count() == 2
    # the cap is per labeller
    assignment_skip(
        item_code=_code(assignment_next(campaign_id=campaign.pk, labeller=carol)), labeller=carol, reason="x"
    )


def test_expired_items_count_against_the_cap_too(registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], max_skips=1))
    codes = []
    for _ in range(3):  # three lapsed leases: items bob saw but could still answer
        a = assignment_next(campaign_id=campaign.pk, labeller=bob)
        Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        leases_release_expired(campaign=campaign)
        codes.append(_code(a))
    assignment_skip(item_code=codes[0], labeller=bob, reason="one")
    with pytest.raises(LabelError, match="used all 1 skip "):
        assignment_skip(item_code=codes[1], labeller=bob, reason="two")


def test_zero_skips_means_none(registry, bob, labeller_client):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], max_skips=0))
    response = labeller_client.post(reverse("label:next", args=[campaign.pk]))
    code = response["Location"].rstrip("/").rsplit("/", 1)[1]
    page = labeller_client.post(reverse("label:skip", args=[code]), {"reason": "boring"}).content.decode()
    assert "No skips in this campaign" in page
    assert labeller_client.get(reverse("label:item", args=[code])).status_code == 200
    assert Campaign.objects.get(pk=campaign.pk).max_skips == 0
