"""Every admin page fits a 390 px phone screen without horizontal scrolling: the pages the navigation reaches,
the pages they link to (a campaign, an SAE, a job, ...), each measured in a real browser."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import Error as PlaywrightError

from compute.jobs import job_create
from compute.models import JobKind
from labelsite.models import Item
from labelsite.services.assignment import assignment_next
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAV = ["/", "/label/", "/manage/campaigns/", "/compute/", "/compute/jobs/", "/admin/"]
SKIP = ("/accounts/logout", "/admin/", "/api/", "/static/", "/media/", "download", "export", ".csv", ".png", ".svg")
MAX_PAGES = 60


def test_every_admin_page_fits_390px(page, login, alice, bob):
    registry = registry_create()
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, alice], features=2))
    held = assignment_next(campaign_id=campaign.pk, labeller=alice)
    job_create(kind=JobKind.SELFCHECK, enqueue=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.set_default_timeout(60_000)  # the results page computes its statistics on the first visit
    login(alice)

    item_page = f"/label/i/{Item.objects.get(pk=held.item_id).code}/"  # the labelling page itself
    queue, seen, measured = [*NAV, item_page], {*NAV, item_page}, {}
    while queue and len(measured) < MAX_PAGES:
        path = queue.pop(0)
        try:
            response = page.goto(path)
        except PlaywrightError as exc:  # a download, not a page
            assert "Download is starting" in str(exc), exc
            continue
        if response is None or response.status != 200 or "text/html" not in response.headers.get("content-type", ""):
            continue
        measured[path] = page.evaluate("document.documentElement.scrollWidth")
        if path not in NAV and not path.startswith(("/manage/campaigns/", "/compute/")):
            continue
        for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"):
            target = urlparse(href)
            if target.netloc or not target.path.startswith("/") or any(s in target.path for s in SKIP):
                continue
            if target.path not in seen and (target.path.startswith(("/manage/", "/compute/", "/label/"))):
                seen.add(target.path)
                queue.append(target.path)
    # the detail pages are among those measured
    assert any(p.startswith(f"/manage/campaigns/{campaign.pk}/") for p in measured)
    assert any("/saes/" in p for p in measured), sorted(measured)
    assert any(p.startswith("/compute/jobs/") and p != "/compute/jobs/" for p in measured)
    assert item_page in measured
    assert len(measured) >= 20 and "/admin/" in measured, sorted(measured)
    too_wide = {p: w for p, w in measured.items() if w > 390}
    assert not too_wide, f"pages wider than 390 px: {too_wide}"
