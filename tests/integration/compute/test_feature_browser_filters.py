"""The feature browser hides features that never fire unless asked, filters by a frequency range and keeps the
filters across sorting and pages."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from compute.models import DashboardSet, FeatureDashboard
from tests.integration.labelsite.factories import registry_create

pytestmark = pytest.mark.django_db

FEATURES = {0: (0, 0.0), 1: (10, 0.001), 2: (100, 0.01), 3: (2000, 0.2)}  # index: (n_firing, frequency)


def _shown(html: str, dset) -> list[int]:
    pattern = rf"/saes/{dset.sae_id}/dashboards/{dset.corpus_id}/features/(\d+)/"
    return sorted({int(i) for i in re.findall(pattern, html)})


def test_dead_hidden_by_default_and_frequency_range(admin_client):
    registry = registry_create()
    dset = DashboardSet.objects.create(
        sae=registry.saes[0], corpus=registry.domain, status=DashboardSet.Status.READY, n_features=4, n_dead=1
    )
    for index, (n, freq) in FEATURES.items():
        FeatureDashboard.objects.create(
            dashboard_set=dset, feature_index=index, n_firing=n, frequency=freq, max_activation=1.0, payload=b""
        )
    url = reverse("compute:feature-browser", args=[dset.sae_id, dset.corpus_id])
    page = admin_client.get(url).content.decode()
    assert _shown(page, dset) == [1, 2, 3] and "1 that never fire hidden" in page
    assert _shown(admin_client.get(url + "?dead=1").content.decode(), dset) == [0, 1, 2, 3]
    ranged = admin_client.get(url + "?min_freq=0.005&max_freq=0.05&sort=rare").content.decode()
    assert _shown(ranged, dset) == [2]
    assert "min_freq=0.005" in ranged and "max_freq=0.05" in ranged  # kept in the sort links
    bad = admin_client.get(url + "?min_freq=lots", follow=True).content.decode()
    assert "give a number" in bad and _shown(bad, dset) == [1, 2, 3]
    jump = admin_client.get(url + "?feature=2")
    assert jump.status_code == 302 and jump["Location"].endswith("/features/2/")
