"""One mapping from service errors to HTTP: the same error gets the same status in every API action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.jobs import JobInputError
from compute.services.registry import RegistryError
from config.api import exception_handler
from config.errors import Conflict, Forbidden, NotFound, ServiceError
from labelsite.models import Item
from labelsite.services import LabelConflict, LabelError, LabelForbidden, LabelNotFound
from labelsite.services.assignment import assignment_next
from labelsite.services.campaigns import campaign_close


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ServiceError, 400), (LabelError, 400), (JobInputError, 400), (RegistryError, 400),
        (Forbidden, 403), (LabelForbidden, 403), (NotFound, 404), (LabelNotFound, 404),
        (Conflict, 409), (LabelConflict, 409),
    ],
)  # fmt: skip
def test_each_service_error_has_one_status(error, status):
    response = exception_handler(error("what to fix"), {})
    assert (response.status_code, response.data) == (status, {"detail": "what to fix"})
    assert issubclass(error, ServiceError)


def test_other_errors_are_left_to_the_framework():
    assert exception_handler(ValueError("x"), {}) is None


@pytest.mark.django_db
def test_a_closed_campaign_answers_409_to_every_labelling_action(client, open_campaign, bob):
    held = Item.objects.get(pk=assignment_next(campaign_id=open_campaign.pk, labeller=bob).item_id).code
    client.force_login(bob)
    bad = client.post(reverse("label-api:judge", args=[held]), {"domain_score": 7, "general_score": 1},
                      content_type="application/json")  # fmt: skip
    assert bad.status_code == 400 and "not a score" in bad.json()["detail"]
    campaign_close(campaign_id=open_campaign.pk)
    answers = {"domain_score": 1, "general_score": 1}
    responses = [
        client.post(reverse("label-api:next", args=[open_campaign.pk])),
        client.post(reverse("label-api:judge", args=[held]), answers, content_type="application/json"),
        client.post(reverse("label-api:skip", args=[held]), {"reason": "x"}, content_type="application/json"),
    ]
    assert [r.status_code for r in responses] == [409, 409, 409]
    assert all("not open" in r.json()["detail"] or "closed" in r.json()["detail"] for r in responses)
