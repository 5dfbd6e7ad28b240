"""Items, assignments and judgments are written only by the services: Django's admin shows them, never adds,
edits or deletes them."""

from __future__ import annotations

import pytest

from labelsite.models import Assignment, Item
from labelsite.services.assignment import assignment_next_code
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["item", "assignment", "judgment", "judgmentrevision"])
def test_labelling_records_are_read_only_in_django_admin(admin_client, alice, bob, model):
    alice.is_superuser = True  # Django's admin shows models by permission; a superuser holds them all
    alice.save()
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=1))
    code = assignment_next_code(campaign_id=campaign.pk, labeller=bob)
    item = Item.objects.get(code=code)
    pk = {"item": item.pk, "assignment": Assignment.objects.get(item=item).pk}.get(model)
    assert admin_client.get(f"/admin/labelsite/{model}/").status_code == 200
    assert admin_client.get(f"/admin/labelsite/{model}/add/").status_code == 403
    if pk is not None:
        page = admin_client.get(f"/admin/labelsite/{model}/{pk}/change/")
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert admin_client.post(f"/admin/labelsite/{model}/{pk}/delete/", {"post": "yes"}).status_code == 403
    assert Item.objects.filter(pk=item.pk).exists()
