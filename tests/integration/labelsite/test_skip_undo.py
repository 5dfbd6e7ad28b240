"""A labeller sees where a skip or a revision happened, can take a skip back for a short while, and is told
on the 404 of their own skipped item why it is gone."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from labelsite.models import Assignment, Judgment
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

ANSWERS = {"domain_explanation": "limits", "domain_score": "3", "general_explanation": "dots", "general_score": "1"}


def _held_code(client, campaign) -> str:
    response = client.post(reverse("label:next", args=[campaign.pk]))
    return response["Location"].rstrip("/").rsplit("/", 1)[1]


def _skip(client, code: str, reason: str = "unreadable") -> str:
    """Skip `code`; the code of the item served next."""
    response = client.post(reverse("label:skip", args=[code]), {"reason": reason})
    assert response.status_code == 302
    return response["Location"].rstrip("/").rsplit("/", 1)[1]


def test_a_skip_is_announced_on_the_next_item_and_can_be_undone_then_judged(labeller_client, registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=3))
    skipped = _held_code(labeller_client, campaign)
    following = _skip(labeller_client, skipped, "unreadable text")
    page = labeller_client.get(reverse("label:item", args=[following])).content.decode()
    assert f"You skipped item <code>{skipped}</code>" in page and "unreadable text" in page
    assert reverse("label:unskip", args=[skipped]) in page

    response = labeller_client.post(reverse("label:unskip", args=[skipped]))
    assert response.status_code == 302 and response["Location"] == reverse("label:item", args=[skipped])
    page = labeller_client.get(response["Location"]).content.decode()
    assert f"Skip undone: item {skipped}" in page
    assert Assignment.objects.get(item__code=skipped, labeller=bob).status == Assignment.Status.EXPIRED
    # judged after all (its slot was free), then the labeller carries on with the item they held
    response = labeller_client.post(reverse("label:item", args=[skipped]), ANSWERS)
    assert Judgment.objects.filter(item__code=skipped, labeller=bob).exists()
    assert response["Location"] == reverse("label:item", args=[following])


def test_an_undone_skip_still_counts_against_the_cap(labeller_client, registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=3, max_skips=1))
    first = _held_code(labeller_client, campaign)
    second = _skip(labeller_client, first)
    labeller_client.post(reverse("label:unskip", args=[first]))
    response = labeller_client.post(reverse("label:skip", args=[second]), {"reason": "again"})
    assert response.status_code == 200 and "You have used all 1 skip of this campaign" in response.content.decode()
    assert Assignment.objects.get(item__code=second, labeller=bob).status == Assignment.Status.HELD


def test_too_late_to_undo_and_the_404_says_the_item_was_skipped(client, registry, bob, carol):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol], features=3))
    client.force_login(bob)
    skipped = _held_code(client, campaign)
    _skip(client, skipped, "off topic")
    page = client.get(reverse("label:item", args=[skipped]))
    assert page.status_code == 404
    assert "You skipped this item" in page.content.decode() and "Undo skip" in page.content.decode()

    Assignment.objects.filter(item__code=skipped).update(
        skipped_at=timezone.now() - timedelta(seconds=Assignment.SKIP_UNDO_S + 1)
    )
    response = client.post(reverse("label:unskip", args=[skipped]), follow=True)
    assert "can be undone only within 2 minutes" in response.content.decode()
    assert Assignment.objects.get(item__code=skipped, labeller=bob).status == Assignment.Status.SKIPPED
    page = client.get(reverse("label:item", args=[skipped])).content.decode()
    assert "You skipped this item" in page and "off topic" in page and "Undo skip" not in page

    # someone else's skipped item stays a plain 404, and cannot be unskipped by them
    client.force_login(carol)
    page = client.get(reverse("label:item", args=[skipped]))
    assert page.status_code == 404 and "You skipped" not in page.content.decode()
    client.post(reverse("label:unskip", args=[skipped]))
    assert Assignment.objects.get(item__code=skipped, labeller=bob).status == Assignment.Status.SKIPPED


def test_a_revision_is_confirmed_on_the_page_that_follows_it(labeller_client, registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=3))
    code = _held_code(labeller_client, campaign)
    labeller_client.post(reverse("label:item", args=[code]), ANSWERS)
    # reopened with Backspace: saved over HTMX, the next item comes back as a partial with the confirmation
    response = labeller_client.post(
        reverse("label:item", args=[code]), {**ANSWERS, "domain_score": "1", "after": "next"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200 and f"Your judgment of item {code} was revised." in html
    assert 'id="workspace"' in html and "<html" not in html
    assert Judgment.objects.get(item__code=code).answers["domain_score"] == 1
