"""Labellers' guesses of the source: asked with neutral letters, stored like any answer, exported, hidden from
other labellers, never marked right or wrong; counted in the results as Bang's and James' blinding indices."""

from __future__ import annotations

import io
import json
import math
from fractions import Fraction

import pyarrow.parquet as pq
import pytest
from django.test import Client
from django.urls import reverse

from labelsite.models import Item
from labelsite.questions import DONT_KNOW, GUESS_KEY
from labelsite.selectors.exports import export_stream
from labelsite.selectors.results import campaign_results
from labelsite.services.assignment import assignment_next_code
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db

N = 10  # features per source
# what the labeller answers for each source's 10 items: (right, wrong, don't know)
PLAN = {0: (6, 2, 2), 1: (3, 5, 2)}


def _judge_all(campaign, labeller) -> None:
    letters = campaign.source_letters()
    first, second = sorted(letters)
    sources = {first: 0, second: 1}
    done = {0: 0, 1: 0}
    while code := assignment_next_code(campaign_id=campaign.pk, labeller=labeller):
        source = Item.objects.get(code=code).source_id
        k, i = sources[source], done[sources[source]]
        done[k] += 1
        right, wrong, _ = PLAN[k]
        other = letters[second if source == first else first]
        guess = letters[source] if i < right else other if i < right + wrong else DONT_KNOW
        # right guesses get score 3, wrong ones 1, don't know 2: the scores by guess below are known
        score = 3 if guess == letters[source] else 1 if guess == other else 2
        judgment_submit(item_code=code, labeller=labeller, answers={"domain_score": score, GUESS_KEY: guess})


def test_guesses_are_asked_by_letter_and_counted_as_blinding_indices(registry, alice, bob, carol):
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=[bob, carol], features=N, questions=["domain"])
    )
    guess = next(q for q in campaign.questions if q["key"] == GUESS_KEY)
    assert [o["value"] for o in guess["options"]] == ["A", "B", DONT_KNOW] and not guess["required"]
    letters = campaign.source_letters()
    assert sorted(letters.values()) == ["A", "B"]
    _judge_all(campaign, bob)

    # the labeller's page asks by letter only, and nothing they receive names a source or says right or wrong
    client = Client()
    client.force_login(bob)
    pages = [
        client.get(reverse("label:mine", args=[campaign.pk])).content.decode(),
        client.get(reverse("label-api:judgments", args=[campaign.pk])).content.decode(),
    ]
    for page in pages:
        for sae in registry.saes:
            assert sae.name not in page and sae.get_method_display() not in page
        assert "correct" not in page.lower() and "wrong" not in page.lower()
    # hidden from other labellers: carol sees none of bob's answers
    other = Client()
    other.force_login(carol)
    assert not other.get(reverse("label:mine", args=[campaign.pk])).context["judgments"]

    results = campaign_results(campaign=campaign, n_resamples=50)
    blinding = results["blinding"]
    assert blinding["guesses"] == 2 * N
    rows = {row["letter"]: row for row in blinding["table"]}
    first, second = sorted(letters)
    a, b = letters[first], letters[second]
    assert rows[a]["counts"] == {a: 6, b: 2, "Don't know": 2} and rows[b]["counts"] == {a: 5, b: 3, "Don't know": 2}
    # Bang: (right - wrong) / n per source; its variance (E[X^2] - E[X]^2) / n with X = +1 right, -1 wrong, 0
    for letter, (right, wrong, _) in ((a, PLAN[0]), (b, PLAN[1])):
        bang = rows[letter]["bang"]
        assert bang["estimate"] == pytest.approx((right - wrong) / N, abs=1e-4)
        assert bang["se"] == pytest.approx(math.sqrt(((right + wrong) / N - ((right - wrong) / N) ** 2) / N), abs=1e-4)
    # James by hand: 4 of 20 don't know; of the 16 who guessed, 7 were wrong (weight 1/2); guesses of the first
    # source's letter 6 + 5 = 11, of the second's 2 + 3 = 5; sources among those who guessed: 8 and 8
    p_dk = Fraction(4, 20)
    p_o = Fraction(1, 2) * Fraction(7, 16)
    p_e = Fraction(1, 2) * Fraction(11 * 8 + 5 * 8, 16**2)
    kappa = (p_o - p_e) / p_e
    assert blinding["james"]["estimate"] == pytest.approx(float((1 + p_dk + (1 - p_dk) * kappa) / 2), abs=1e-4)
    # do labellers who guess a letter score higher? right guesses scored 3, wrong 1, don't know 2
    means = blinding["scores_by_guess"][0]["by_guess"]
    assert means[a] == {"mean": pytest.approx((6 * 3 + 5 * 1) / 11, abs=1e-4), "n": 11}
    assert means[b] == {"mean": pytest.approx((2 * 1 + 3 * 3) / 5, abs=1e-4), "n": 5}
    assert means["Don't know"] == {"mean": 2.0, "n": 4}

    # exported in every format, one column like any answer
    csv = "".join(export_stream(campaign=campaign, fmt="csv"))
    header = csv.splitlines()[0].split(",")
    assert GUESS_KEY in header
    column = header.index(GUESS_KEY)
    assert sorted(line.split(",")[column] for line in csv.splitlines()[1:]) == sorted(
        [a] * 11 + [b] * 5 + [DONT_KNOW] * 4
    )
    jsonl = [json.loads(line) for line in "".join(export_stream(campaign=campaign, fmt="jsonl")).splitlines()]
    assert sorted(r[GUESS_KEY] for r in jsonl) == sorted([a] * 11 + [b] * 5 + [DONT_KNOW] * 4)
    table = pq.read_table(io.BytesIO(b"".join(export_stream(campaign=campaign, fmt="parquet"))))
    assert sorted(table.column(GUESS_KEY).to_pylist()) == sorted([a] * 11 + [b] * 5 + [DONT_KNOW] * 4)

    # the results page reports them, with the indices
    admin = Client()
    admin.force_login(alice)
    page = admin.get(reverse("manage:campaign-results", args=[campaign.pk])).content.decode()
    assert "Bang&#x27;s index" in page or "Bang's index" in page
    assert '<td class="num">0.4</td>' in page and '<td class="num">-0.2</td>' in page


def test_a_campaign_can_leave_the_guess_out(registry, bob):
    campaign = campaign_draft(registry=registry, labellers=[bob], features=3, ask_source_guess=False)
    assert all(q["key"] != GUESS_KEY for q in campaign.questions)
