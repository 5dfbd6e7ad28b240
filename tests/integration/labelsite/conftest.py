from __future__ import annotations

import pytest

from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create


@pytest.fixture
def registry(db):
    return registry_create()


@pytest.fixture
def open_campaign(registry, bob, carol):
    """An open campaign (k = 1) of 10 features from each of two SAEs, labelled by bob and carol."""
    return campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol]))
