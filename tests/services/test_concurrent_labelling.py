"""Many labellers at once, each on their own database connection (threads), on the configured database.

CI points DATABASE_URL at PostgreSQL, where row locks (select_for_update skip_locked) and the check
and unique constraints do the work; on SQLite the same code runs with whole-database write locks.
Checked against a brute-force count of the tables: no item over k, no labeller twice on an item,
no lost or doubled submission, and counters equal to the rows they count.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection
from django.utils import timezone

from labelsite.models import Assignment, Item, Judgment
from labelsite.services import LabelError
from labelsite.services.assignment import (
    assignment_next,
    assignment_next_code,
    assignment_skip,
    leases_release_expired,
)
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create

pytestmark = pytest.mark.django_db(transaction=True)

N_LABELLERS = 24
FEATURES_PER_SAE = 30  # 60 items
K = 2


def _run_labellers(campaign, users, *, skip_rate: float = 0.0) -> tuple[dict, list[BaseException]]:
    submitted: dict[int, dict[str, dict]] = {u.pk: {} for u in users}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def work(user, seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait()
            while True:
                code = assignment_next_code(campaign_id=campaign.pk, labeller=user)
                if code is None:
                    break
                if rng.random() < skip_rate:
                    assignment_skip(item_code=code, labeller=user, reason="concurrency test")
                    continue
                answers = dict(
                    domain_explanation=f"{user.username} on {code}",
                    domain_score=rng.randint(0, 3),
                    general_explanation="generic",
                    general_score=rng.randint(0, 3),
                    nice=rng.random() < 0.2,
                )
                judgment_submit(item_code=code, labeller=user, answers=answers)
                if rng.random() < 0.3:  # a double submit (retry after a lost response): must change nothing
                    _, changed = judgment_submit(item_code=code, labeller=user, answers=answers)
                    assert not changed
                submitted[user.pk][code] = answers
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread via `errors`
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(u, i)) for i, u in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a labeller thread hung"
    return submitted, errors


def _check_invariants(campaign, submitted) -> None:
    judgments = list(
        Judgment.objects.filter(campaign=campaign).values_list("item__code", "labeller_id", "answers__domain_score")
    )
    per_item = Counter(code for code, _, _ in judgments)
    pairs = Counter((code, labeller) for code, labeller, _ in judgments)
    assert max(per_item.values()) <= K
    assert max(pairs.values()) == 1
    # every submission acknowledged to a labeller is in the database, with its answers
    stored = {(code, labeller): score for code, labeller, score in judgments}
    expected = {(code, uid): a["domain_score"] for uid, items in submitted.items() for code, a in items.items()}
    assert stored == expected
    # counters equal the rows they stand for
    held_or_done = Counter(
        Assignment.objects.filter(campaign=campaign, status__in=["held", "done"]).values_list("item__code", flat=True)
    )
    for code, slots, count in Item.objects.filter(campaign=campaign).values_list(
        "code", "slots_taken", "judgment_count"
    ):
        assert count == per_item.get(code, 0)
        assert slots == held_or_done.get(code, 0)
        assert slots <= K


def test_many_labellers_at_once_never_exceed_k_nor_lose_a_submission(db):
    registry = registry_create()
    users = [get_user_model().objects.create_user(f"conc-{i}") for i in range(N_LABELLERS)]
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=users, overlap=K, features=FEATURES_PER_SAE)
    )
    submitted, errors = _run_labellers(campaign, users)
    assert errors == []
    _check_invariants(campaign, submitted)
    # with enough labellers every item ends with exactly k judgments
    assert set(Item.objects.filter(campaign=campaign).values_list("judgment_count", flat=True)) == {K}
    assert sum(len(v) for v in submitted.values()) == 2 * FEATURES_PER_SAE * K


def test_concurrent_skips_give_slots_back_to_others(db):
    registry = registry_create()
    users = [get_user_model().objects.create_user(f"skip-{i}") for i in range(N_LABELLERS)]
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=users, overlap=K, features=FEATURES_PER_SAE)
    )
    submitted, errors = _run_labellers(campaign, users, skip_rate=0.25)
    assert errors == []
    _check_invariants(campaign, submitted)
    assert not Assignment.objects.filter(campaign=campaign, status="held").exists()


def _at_once(calls) -> tuple[list, list[BaseException]]:
    """Run the calls in threads released together (one database connection each); results in call order."""
    results: list = [None] * len(calls)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(calls))

    def work(i: int, call) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except LabelError as exc:
            results[i] = exc
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread via `errors`
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results, errors


def test_skip_cap_holds_when_one_labeller_skips_many_items_at_once(db):
    """Each labeller has lapsed leases on 12 items and fires 12 skips at the same instant; the cap is 2."""
    cap, per_labeller = 2, 12
    registry = registry_create()
    users = [get_user_model().objects.create_user(f"cap-{i}") for i in range(4)]
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=users, features=FEATURES_PER_SAE, max_skips=cap)
    )
    codes: dict[int, list[str]] = {}
    for user in users:
        for _ in range(per_labeller):
            a = assignment_next(campaign_id=campaign.pk, labeller=user)
            Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
            leases_release_expired(campaign=campaign)
            codes.setdefault(user.pk, []).append(Item.objects.get(pk=a.item_id).code)
    calls = [
        (lambda c=code, u=user: assignment_skip(item_code=c, labeller=u, reason="race"))
        for user in users
        for code in codes[user.pk]
    ]
    results, errors = _at_once(calls)
    assert errors == []
    refused = [r for r in results if isinstance(r, LabelError)]
    assert all("used all 2 skips" in str(r) for r in refused)
    skipped = Counter(
        Assignment.objects.filter(campaign=campaign, status="skipped").values_list("labeller_id", flat=True)
    )
    assert skipped == {u.pk: cap for u in users}
    assert len(refused) == len(users) * (per_labeller - cap)


def test_parallel_next_requests_of_one_labeller_hold_one_item(db):
    registry = registry_create()
    user = get_user_model().objects.create_user("eager")
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[user], features=FEATURES_PER_SAE))
    results, errors = _at_once([lambda: assignment_next_code(campaign_id=campaign.pk, labeller=user)] * 8)
    assert errors == []
    assert len(set(results)) == 1 and results[0] is not None
    assert Assignment.objects.filter(campaign=campaign, labeller=user).count() == 1
    assert sum(Item.objects.filter(campaign=campaign).values_list("slots_taken", flat=True)) == 1
