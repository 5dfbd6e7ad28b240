"""Opening a campaign whose blinding audit failed asks first, in a real browser under the site's
Content-Security-Policy (an inline handler would be blocked, and one click would open it)."""

from __future__ import annotations

import pytest

from compute.models import Job
from labelsite.models import Campaign
from labelsite.services.audit import campaign_audit
from labelsite.services.campaigns import OPEN_JOB_KIND
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_open_anyway_asks_and_only_a_confirmed_click_opens(page, login, alice, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry_create(), labellers=[bob], features=8))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.DRAFT)
    # the panels were written by hand, not by the renderer: the swap test fails, so the audit does
    assert campaign_audit(campaign_id=campaign.pk).leak
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    asked: list[str] = []

    def answer(accept: bool):
        def on_dialog(dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return on_dialog

    login(alice)
    page.goto(f"/manage/campaigns/{campaign.pk}/")
    button = page.get_by_role("button", name="Open anyway (audit failed)")
    page.once("dialog", answer(False))
    button.click()
    page.wait_for_timeout(300)
    assert asked and "Open anyway?" in asked[0]
    assert not Job.objects.filter(kind=OPEN_JOB_KIND).exists()  # dismissed: nothing sent
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.DRAFT
    page.once("dialog", answer(True))
    with page.expect_navigation():
        button.click()
    assert len(asked) == 2
    job = Job.objects.get(kind=OPEN_JOB_KIND)
    assert job.params["confirm_leak"] is True
    assert not violations, violations
