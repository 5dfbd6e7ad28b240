"""The live probe offered to labellers: by item code only, relative values only, and only where the campaign
switches it on; answered by a real ProbeWorker on another thread."""

from __future__ import annotations

import threading

import pytest
from django.urls import reverse

from compute.models import DashboardSet, FeatureDashboard
from compute.services.probe import ProbeWorker
from labelsite.models import Campaign, Item
from tests.factories import random_sae, tiny_language_model
from tests.integration.labelsite.factories import Registry, campaign_draft, campaign_open_offline, registry_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def probe_campaign(tmp_path, artifacts, bob):
    base = registry_create()
    lm = tiny_language_model(tmp_path / "tiny-model", hook="blocks.1.hook_resid_post")
    sae = random_sae(artifacts, lm=lm, name="zq-secret-probe-sae", method="direct", d_sae=8)
    dset = DashboardSet.objects.create(sae=sae, corpus=base.domain, status="ready", n_features=8)
    FeatureDashboard.objects.bulk_create(
        FeatureDashboard(dashboard_set=dset, feature_index=i, max_activation=0.5, payload=b"") for i in range(8)
    )
    registry = Registry(lm=lm, domain=base.domain, general=base.general, saes=[sae])
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=2))
    return campaign, sae


def _code(client, campaign) -> str:
    return client.post(reverse("label:next", args=[campaign.pk]))["Location"].rstrip("/").rsplit("/", 1)[1]


def test_probe_only_where_offered_and_only_by_item_code(labeller_client, probe_campaign, carol, client):
    campaign, sae = probe_campaign
    code = _code(labeller_client, campaign)
    url = reverse("label:probe", args=[code])
    assert labeller_client.post(url, {"text": "hello"}).status_code == 404  # not switched on
    assert "Try a text on this feature" not in labeller_client.get(reverse("label:item", args=[code])).content.decode()

    Campaign.objects.filter(pk=campaign.pk).update(panel_extras=["probe"])
    assert "Try a text on this feature" in labeller_client.get(reverse("label:item", args=[code])).content.decode()
    worker = ProbeWorker(device="cpu")
    worker.load(sae)
    thread = threading.Thread(target=worker.run, kwargs={"stop_after_s": 15}, daemon=True)
    thread.start()
    response = labeller_client.post(url, {"text": "Einstein was born in Ulm."}, HTTP_HX_REQUEST="true")
    thread.join()
    body = response.content.decode()
    assert response.status_code == 200, body
    assert 'id="probe-result"' in body and "Per-token values" in body
    item = Item.objects.get(code=code)
    for secret in (sae.name, "direct", f"/features/{item.feature_index}", "/compute/"):
        assert secret not in body

    client.force_login(carol)  # not a labeller of this campaign: nothing to probe
    assert client.post(url, {"text": "hello"}).status_code == 404
