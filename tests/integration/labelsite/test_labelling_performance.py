"""With 10,000 items and 50,000 judgments the labelling page costs the same number of queries as with 10."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from labelsite.benchmarks.seed import seed_labelling_load
from labelsite.models import Item, Judgment

pytestmark = pytest.mark.django_db


def _page_queries(client, campaign_id: int) -> tuple[int, float, str]:
    item_url = client.post(reverse("label:next", args=[campaign_id]))["Location"]
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        response = client.get(item_url)
        elapsed = time.perf_counter() - start
    assert response.status_code == 200
    return len(queries), elapsed, item_url


def test_labelling_page_query_count_does_not_grow_with_the_data(client, django_assert_max_num_queries):
    from django.contrib.auth import get_user_model

    small = seed_labelling_load(items=10, judgments=50, load_labellers=1, name="small")
    big = seed_labelling_load(items=10_000, judgments=50_000, load_labellers=1, panel_examples=2, name="big")
    assert Item.objects.filter(campaign_id=big["campaign_id"]).count() == 10_000
    assert Judgment.objects.filter(campaign_id=big["campaign_id"]).count() == 50_000
    users = get_user_model().objects
    client.force_login(users.get(pk=small["load_labeller_ids"][0]))
    n_small, _, _ = _page_queries(client, small["campaign_id"])
    client.force_login(users.get(pk=big["load_labeller_ids"][0]))
    n_big, _, item_url = _page_queries(client, big["campaign_id"])
    assert n_small == n_big
    with django_assert_max_num_queries(10):
        assert client.get(item_url).status_code == 200
    # a few more pages: the count stays the same whatever the item
    for _ in range(3):
        response = client.post(
            item_url, {"domain_score": "1", "general_score": "2", "domain_explanation": "a", "general_explanation": "b"}
        )
        item_url = response["Location"]
        with CaptureQueriesContext(connection) as queries:
            client.get(item_url)
        assert len(queries) == n_big
