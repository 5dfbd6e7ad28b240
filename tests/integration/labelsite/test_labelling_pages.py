"""The labeller's pages: plain form posts without JavaScript, the HTMX variant, skip, revise, history."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labelsite.models import Assignment, Judgment

pytestmark = pytest.mark.django_db


def _start(client, campaign) -> str:
    response = client.post(reverse("label:next", args=[campaign.pk]))
    assert response.status_code == 302
    return response["Location"]


def _form(**overrides) -> dict:
    return {
        "domain_explanation": "limits",
        "domain_score": "3",
        "general_explanation": "dots",
        "general_score": "1",
        "comment": "",
        **overrides,
    }


def test_home_and_label_index_list_the_users_campaigns(labeller_client, open_campaign, registry, alice):
    from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

    campaign_open_offline(campaign_draft(registry=registry, labellers=[alice], name="Not for bob"))
    for url in (reverse("home"), reverse("label:index")):
        html = labeller_client.get(url).content.decode()
        assert "Math blind test" in html
        assert "Not for bob" not in html


def test_plain_form_post_flow_judges_and_moves_on(labeller_client, open_campaign, bob):
    item_url = _start(labeller_client, open_campaign)
    code = item_url.rstrip("/").rsplit("/", 1)[1]
    page = labeller_client.get(item_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Top activations on domain text" in html and html.index("domain text") < html.index("general web text")
    assert page["Cache-Control"] == "no-store"
    response = labeller_client.post(item_url, _form(nice="on", time_spent_ms="2500"))
    assert response.status_code == 302
    next_url = response["Location"]
    assert next_url != item_url and next_url.startswith("/label/i/")
    judgment = Judgment.objects.get(item__code=code, labeller=bob)
    assert (
        judgment.answers["domain_score"],
        judgment.answers["general_score"],
        judgment.answers["nice"],
        judgment.time_spent_ms,
    ) == (3, 1, True, 2500)
    assert judgment.panel_order == "domain,general"


def test_missing_score_shows_a_clear_error_and_keeps_the_answers(labeller_client, open_campaign):
    item_url = _start(labeller_client, open_campaign)
    response = labeller_client.post(item_url, _form(general_score=""))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Score the explanation from the general examples." in html
    assert "limits" in html
    assert not Judgment.objects.exists()


def test_htmx_submit_swaps_in_the_next_item_and_pushes_its_url(labeller_client, open_campaign):
    item_url = _start(labeller_client, open_campaign)
    response = labeller_client.post(item_url, _form(), headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="workspace"')
    assert "<html" not in html
    assert response["HX-Push-Url"].startswith("/label/i/") and response["HX-Push-Url"] != item_url


def test_without_js_time_is_measured_from_when_the_page_was_served(labeller_client, open_campaign):
    import time

    item_url = _start(labeller_client, open_campaign)
    shown = int(time.time() * 1000) - 7000
    labeller_client.post(item_url, _form(shown_at_ms=str(shown)))
    assert 7000 <= Judgment.objects.get().time_spent_ms < 60000


def test_skip_needs_a_reason_then_moves_on(labeller_client, open_campaign, bob):
    item_url = _start(labeller_client, open_campaign)
    code = item_url.rstrip("/").rsplit("/", 1)[1]
    response = labeller_client.post(reverse("label:skip", args=[code]), {"reason": ""})
    assert "Say briefly why you skip this item." in response.content.decode()
    response = labeller_client.post(reverse("label:skip", args=[code]), {"reason": "no examples"})
    assert response.status_code == 302 and code not in response["Location"]
    assert Assignment.objects.get(item__code=code, labeller=bob).skip_reason == "no examples"


def test_revise_from_history_until_closed(labeller_client, open_campaign, bob):
    item_url = _start(labeller_client, open_campaign)
    code = item_url.rstrip("/").rsplit("/", 1)[1]
    labeller_client.post(item_url, _form())
    mine = labeller_client.get(reverse("label:mine", args=[open_campaign.pk])).content.decode()
    assert code in mine and "Revise" in mine
    page = labeller_client.get(item_url).content.decode()
    assert "revising your judgment" in page and "limits" in page
    response = labeller_client.post(item_url, _form(domain_score="2"))
    assert response["Location"] == reverse("label:mine", args=[open_campaign.pk])
    assert Judgment.objects.get(item__code=code).answers["domain_score"] == 2
    assert Judgment.objects.count() == 1


def test_labeller_cannot_open_someone_elses_item(client, open_campaign, bob, carol):
    client.force_login(bob)
    code = _start(client, open_campaign).rstrip("/").rsplit("/", 1)[1]
    client.force_login(carol)
    assert client.get(reverse("label:item", args=[code])).status_code == 404
    assert client.post(reverse("label:item", args=[code]), _form()).status_code == 404
    assert not Judgment.objects.exists()


def test_guidelines_markdown_is_rendered_and_sanitised(labeller_client, registry, bob):
    from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

    campaign = campaign_open_offline(
        campaign_draft(
            registry=registry,
            labellers=[bob],
            name="md",
            guidelines="Read **both** panels.\n\n<script>alert(1)</script>\n\n[x](javascript:alert(2))",
        )
    )
    html = labeller_client.get(reverse("label:campaign", args=[campaign.pk])).content.decode()
    assert "<strong>both</strong>" in html
    assert "<script>alert(1)" not in html and "javascript:alert" not in html


def test_random_panel_order_varies_by_item(bob):
    from labelsite.selectors.blind import panel_kinds

    kinds = [tuple(panel_kinds(panel_order="random", item_code=f"code{i}", labeller_id=bob.pk)) for i in range(40)]
    assert set(kinds) == {("domain", "general"), ("general", "domain")}
    # stable: the same item shows the same order to the same labeller every time
    assert kinds == [
        tuple(panel_kinds(panel_order="random", item_code=f"code{i}", labeller_id=bob.pk)) for i in range(40)
    ]
    assert panel_kinds(panel_order="general_first", item_code="x", labeller_id=1) == ["general", "domain"]


def _lapse(campaign, user) -> None:
    """Let the user's lease run out and be given back, as after a long break."""
    from datetime import timedelta

    from django.utils import timezone

    from labelsite.services.assignment import leases_release_expired

    Assignment.objects.filter(labeller=user).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_release_expired(campaign=campaign) == 1


def test_answers_from_a_page_left_open_past_the_lease_are_kept(labeller_client, open_campaign, bob):
    item_url = _start(labeller_client, open_campaign)
    _lapse(open_campaign, bob)
    assert "your time on this item ran out" in labeller_client.get(item_url).content.decode()
    response = labeller_client.post(item_url, _form())  # his typed answers still count
    assert response.status_code == 302
    assert Judgment.objects.get(labeller=bob).answers["domain_explanation"] == "limits"


def test_late_answers_for_an_item_others_completed_get_a_clear_message(client, open_campaign, bob, carol):
    client.force_login(bob)
    item_url = _start(client, open_campaign)
    code = item_url.rstrip("/").rsplit("/", 1)[1]
    _lapse(open_campaign, bob)
    from django.utils import timezone

    from labelsite.models import Item
    from labelsite.services.judgments import judgment_submit

    now = timezone.now()
    Assignment.objects.create(
        campaign=open_campaign, item=Item.objects.get(code=code), labeller=carol, leased_at=now, expires_at=now
    )
    Item.objects.filter(code=code).update(slots_taken=1)
    judgment_submit(item_code=code, labeller=carol, answers=dict(domain_score=1, general_score=1))
    response = client.post(item_url, _form())
    html = response.content.decode()
    assert response.status_code == 200
    assert "others have since completed it" in html
    assert "limits" in html  # the answers stay on the page
    assert not Judgment.objects.filter(labeller=bob).exists()
