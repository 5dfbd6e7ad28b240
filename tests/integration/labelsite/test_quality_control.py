"""Quality control in campaigns: repeated items (self-agreement) and gold items (expected answers).

Repeats come only to the labeller who judged the original, some items later, and look exactly like it; gold
items go to every labeller; the study's results leave both out and report them in their own section, checked
against hand-computed values and the krippendorff package called directly.
"""

from __future__ import annotations

import csv
import io
import statistics

import krippendorff
import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from labelsite.models import SHUFFLE_PRIME, Campaign, Item, Judgment
from labelsite.selectors.results import campaign_results
from labelsite.services import LabelError
from labelsite.services.assignment import REPEAT_MIN_GAP, assignment_next, labeller_permutation
from labelsite.services.campaigns import GoldSpec, campaign_open
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import (
    campaign_draft,
    campaign_form,
    campaign_open_offline,
    registry_create,
    synthetic_dashboards,
)

pytestmark = pytest.mark.django_db

FEATURES = 10  # per SAE: 20 regular items
SHARE = 0.25  # round(20 * 0.25 / 0.75) = round(6.67) = 7 repeats
GOLD_FEATURES = (60, 61)


def _gold(registry) -> list[GoldSpec]:
    return [
        GoldSpec(sae_id=registry.saes[0].pk, feature_index=60, expected={"domain_score": "3", "nice": "yes"}),
        GoldSpec(sae_id=registry.saes[1].pk, feature_index=61, expected={"domain_score": 0}),
    ]


@pytest.fixture
def checked(registry, bob, carol) -> Campaign:
    """k = 1, bob and carol, 20 regular items, 7 repeats and 2 gold items (neutral panels)."""
    return campaign_open_offline(
        campaign_draft(
            registry=registry,
            labellers=[bob, carol],
            features=FEATURES,
            seed=3,
            repeat_share=SHARE,
            gold=_gold(registry),
        )
    )


def _score(item: Item, username: str) -> int:
    """Regular: direct features 3, ssae features feature % 2. Repeats: bob repeats himself except on every third
    feature (then one higher, mod 4); carol always answers 2. Gold: bob as expected, carol 0."""
    if item.kind == Item.Kind.GOLD:
        return item.expected_answers["domain_score"] if username == "bob" else 0
    base = 3 if item.source.sae.method == "direct" else item.feature_index % 2
    if item.kind == Item.Kind.REPEAT:
        if username == "carol":
            return 2
        return (base + 1) % 4 if item.feature_index % 3 == 0 else base
    return base


def _answers(item: Item, username: str) -> dict:
    nice = item.feature_index % 2 == 0 if item.kind != Item.Kind.GOLD else username == "bob"
    if item.kind == Item.Kind.REPEAT and username == "carol":
        nice = not nice
    return {"domain_score": _score(item, username), "general_score": 1, "nice": nice}


def _run(campaign: Campaign, users, order=None) -> dict[str, list[tuple[Item, str]]]:
    """Let the labellers take turns (or go one after the other with `order="serial"`) until nothing is left for
    anyone; each one's sequence of (item, stage that chose it)."""
    sequences: dict[str, list[tuple[Item, str]]] = {u.username: [] for u in users}
    groups = [[u] for u in users] if order == "serial" else [list(users)]
    for active in groups:
        while active:
            for user in list(active):
                held = assignment_next(campaign_id=campaign.pk, labeller=user)
                if held is None:
                    active.remove(user)
                    continue
                item = Item.objects.select_related("source__sae").get(pk=held.item_id)
                sequences[user.username].append((item, held.reason))
                judgment_submit(item_code=item.code, labeller=user, answers=_answers(item, user.username))
    return sequences


def _repeats_served(sequences) -> int:
    """How many repeats were served; one that never was must be the repeat of some labeller's very last item
    (it would have come straight after its original)."""
    served = {item.pk for sequence in sequences.values() for item, _ in sequence if item.kind == Item.Kind.REPEAT}
    last = {sequence[-1][0].pk for sequence in sequences.values() if sequence}
    for repeat in Item.objects.filter(kind=Item.Kind.REPEAT).exclude(pk__in=served):
        assert repeat.repeat_of_id in last, "a repeat was left out although other items came after its original"
    return len(served)


def test_sampling_creates_repeats_of_regular_items_and_gold_items_for_everyone(checked, registry):
    items = Item.objects.filter(campaign=checked)
    regular = items.filter(kind=Item.Kind.REGULAR)
    assert regular.count() == 2 * FEATURES
    repeats = list(items.filter(kind=Item.Kind.REPEAT).select_related("repeat_of"))
    assert len(repeats) == 7
    assert len({r.repeat_of_id for r in repeats}) == 7  # seven different originals, all regular
    for repeat in repeats:
        assert repeat.repeat_of.kind == Item.Kind.REGULAR and repeat.repeat_of.campaign_id == checked.pk
        assert (repeat.source_id, repeat.feature_index) == (repeat.repeat_of.source_id, repeat.repeat_of.feature_index)
        assert repeat.code != repeat.repeat_of.code and repeat.overlap == 1
    gold = {(g.source.sae_id, g.feature_index): g for g in items.filter(kind=Item.Kind.GOLD).select_related("source")}
    assert set(gold) == {(registry.saes[0].pk, 60), (registry.saes[1].pk, 61)}
    assert gold[(registry.saes[0].pk, 60)].expected_answers == {"domain_score": 3, "nice": True}
    assert all(g.overlap == 2 for g in gold.values())  # every labeller judges every gold item
    # A gold feature is never also a regular item of its own SAE (another SAE's feature of that number may be).
    regular_keys = set(regular.values_list("source__sae_id", "feature_index"))
    assert not set(gold) & regular_keys


def test_repeats_come_only_to_the_labeller_of_the_original_and_never_straight_after(checked, bob, carol):
    sequences = _run(checked, [bob, carol])
    served = 0
    for username, sequence in sequences.items():
        position = {item.pk: i for i, (item, _) in enumerate(sequence)}
        for i, (item, reason) in enumerate(sequence):
            if item.kind != Item.Kind.REPEAT:
                continue
            served += 1
            assert item.repeat_of_id in position, (username, "got a repeat of an item it never judged")
            between = i - position[item.repeat_of_id] - 1
            assert between >= (REPEAT_MIN_GAP if reason == "repeat_due" else 1), (username, reason, between)
        kinds = [item.kind for item, _ in sequence]
        assert kinds.count(Item.Kind.GOLD) == 2  # both gold items, for each labeller
    assert served == _repeats_served(sequences) >= 5  # each repeat served once at most (k = 1)
    assert Judgment.objects.filter(item__kind=Item.Kind.REPEAT).count() == served
    for j in Judgment.objects.filter(item__kind=Item.Kind.REPEAT).select_related("item"):
        assert Judgment.objects.filter(item_id=j.item.repeat_of_id, labeller_id=j.labeller_id, pk__lt=j.pk).exists()


def test_gold_items_are_spread_over_a_run_in_the_labellers_own_order(checked, bob, carol):
    sequences = _run(checked, [bob, carol])
    for user in (bob, carol):
        a, b = labeller_permutation(campaign_id=checked.pk, labeller_id=user.pk)
        golds = [(i, item) for i, (item, _) in enumerate(sequences[user.username]) if item.kind == Item.Kind.GOLD]
        ranks = [(item.shuffle_key * a + b) % SHUFFLE_PRIME for _, item in golds]
        assert ranks == sorted(ranks)  # served in the labeller's shuffled order, one by one as their place comes
        # a gold item due at rank r comes once r / P of the labeller's expected 10 + 2 items are judged
        for (i, _), rank in zip(golds, ranks, strict=True):
            assert i >= rank * 12 // SHUFFLE_PRIME or i == len(sequences[user.username]) - 1


def test_a_repeat_never_goes_to_someone_who_did_not_judge_its_original(checked, bob, carol):
    sequences = _run(checked, [bob, carol], order="serial")  # bob takes every regular item before carol starts
    assert {item.kind for item, _ in sequences["carol"]} == {Item.Kind.GOLD}
    assert sum(item.kind == Item.Kind.REPEAT for item, _ in sequences["bob"]) == _repeats_served(sequences) >= 6


def test_a_repeat_code_cannot_be_judged_by_another_labeller(checked, bob, carol):
    held = assignment_next(campaign_id=checked.pk, labeller=bob)
    original = Item.objects.select_related("source__sae").get(pk=held.item_id)
    repeat = Item.objects.filter(kind=Item.Kind.REPEAT).exclude(repeat_of=original).first()
    judgment_submit(item_code=original.code, labeller=bob, answers=_answers(original, "bob"))
    with pytest.raises(LabelError, match="not assigned to you"):
        judgment_submit(item_code=repeat.code, labeller=carol, answers={"domain_score": 1, "general_score": 1})
    assert not Judgment.objects.filter(item=repeat).exists()


def test_repeats_show_exactly_the_original_panels_and_the_audit_leaves_them_out(client, bob):
    registry = registry_create(d_sae=64, names=("same-a", "same-b"))
    for k, sae in enumerate(registry.saes):
        for corpus in (registry.domain, registry.general):
            synthetic_dashboards(
                sae=sae, corpus=corpus, log10_freqs=[-2.0] * 64, scale=(1.0, 3.0), seed=7 * k + corpus.pk
            )
    draft = campaign_draft(registry=registry, labellers=[bob], features=8, repeat_share=0.5, seed=1)
    campaign = campaign_open(campaign_id=draft.pk, confirm_leak=True)
    assert campaign.status == Campaign.Status.OPEN
    repeats = list(Item.objects.filter(campaign=campaign, kind=Item.Kind.REPEAT).select_related("repeat_of"))
    assert len(repeats) == 16  # share 0.5: every item once more
    for repeat in repeats:
        original = repeat.repeat_of
        assert original.domain_html and original.general_html
        assert (repeat.domain_html, repeat.general_html) == (original.domain_html, original.general_html)
        assert repeat.code != original.code
    assert campaign.audit["n_items"] == 16  # the originals only: a copy would be recognised, not predicted

    # what the labeller's browser receives for a repeat is what it received for the original, but the code
    client.force_login(bob)
    received = {}
    while (body := client.post(reverse("label-api:next", args=[campaign.pk])).json())["item"] is not None:
        item = body["item"]
        received[item["code"]] = item
        answer = {"domain_score": 1, "general_score": 1}
        assert (
            client.post(reverse("label-api:judge", args=[item["code"]]), answer, "application/json").status_code == 201
        )
    assert len(received) == 32
    for repeat in repeats:
        first, again = received[repeat.repeat_of.code], received[repeat.code]
        assert {k: v for k, v in first.items() if k != "code"} == {k: v for k, v in again.items() if k != "code"}
        text = str(again).lower()
        assert "repeat" not in text and "gold" not in text and "regular" not in text


def test_results_leave_repeats_and_gold_out_and_report_quality(checked, bob, carol, registry):
    sequences = _run(checked, [bob, carol])
    results = campaign_results(campaign=checked, n_resamples=200)

    # every breakdown counts the 20 regular judgments only; the means are those of the regular answers
    assert results["judgments"] == 20 and results["features"] == 20
    regular = {m: [] for m in ("direct", "ssae")}
    everything = {m: [] for m in ("direct", "ssae")}
    for username, sequence in sequences.items():
        for item, _ in sequence:
            score = _score(item, username)
            everything[item.source.sae.method].append(score)
            if item.kind == Item.Kind.REGULAR:
                regular[item.source.sae.method].append(score)
    section = next(s for s in results["scores"] if s["key"] == "domain_score")
    for method, values in regular.items():
        label = next(s["label"] for s in results["sources"] if s["method"] == method)
        assert section["per_source"][label]["estimate"]["mean"] == pytest.approx(statistics.fmean(values), abs=1e-4)
        assert statistics.fmean(values) != pytest.approx(statistics.fmean(everything[method]), abs=1e-3)
        assert sum(d["count"] for d in section["per_source"][label]["distribution"].values()) == len(values)
    assert sum(row["judgments"] for row in results["per_labeller"]) == 20
    assert len(results["measured"]["features"]) == 20

    quality = results["quality"]
    served = _repeats_served(sequences)
    assert (quality["repeat_items"], quality["repeat_pairs"]) == (7, served)
    assert (quality["gold_items"], quality["gold_judgments"]) == (2, 4)
    pairs = {"bob": [], "carol": []}
    for username, sequence in sequences.items():
        originals = {item.pk: item for item, _ in sequence}
        for item, _ in sequence:
            if item.kind == Item.Kind.REPEAT:
                first = originals[item.repeat_of_id]
                pairs[username].append((_answers(first, username), _answers(item, username)))
    agreement = {s["key"]: s for s in quality["self_agreement"]}
    assert set(agreement) == {"domain_score", "general_score", "nice"}
    score_rows = {row["labeller"]: row for row in agreement["domain_score"]["labellers"]}
    for username, user_pairs in pairs.items():
        a = [p[0]["domain_score"] for p in user_pairs]
        b = [p[1]["domain_score"] for p in user_pairs]
        row = score_rows[username]
        assert row["pairs"] == len(user_pairs)
        assert row["identical"] == pytest.approx(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), abs=1e-4)
        assert row["mean_abs_diff"] == pytest.approx(
            sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a), abs=1e-4
        )
        if len(a) < 5:
            assert row["alpha"] is None
        nice_row = next(r for r in agreement["nice"]["labellers"] if r["labeller"] == username)
        same = [p[0]["nice"] == p[1]["nice"] for p in user_pairs]
        assert nice_row["identical"] == pytest.approx(sum(same) / len(same), abs=1e-4)
        assert "alpha" not in nice_row and "mean_abs_diff" not in nice_row
    assert score_rows["carol"]["identical"] is not None and agreement["nice"]["labellers"][1]["identical"] == 0.0
    # pooled over the 7 pairs: alpha as the krippendorff package computes it on (first, repeat)
    first = [p[0]["domain_score"] for ps in pairs.values() for p in ps]
    again = [p[1]["domain_score"] for ps in pairs.values() for p in ps]
    want = krippendorff.alpha(
        reliability_data=[first, again], level_of_measurement="ordinal", value_domain=[0, 1, 2, 3]
    )
    pooled = agreement["domain_score"]["all"]
    assert pooled["pairs"] == served >= 5 and pooled["alpha"]["alpha"] == pytest.approx(want, abs=1e-4)
    assert pooled["alpha"]["low"] <= pooled["alpha"]["alpha"] <= pooled["alpha"]["high"]

    gold = {s["key"]: {row["labeller"]: row for row in s["labellers"]} for s in quality["gold"]}
    assert set(gold) == {"domain_score", "nice"}
    # bob answers as expected; carol answers 0 (expected: 3 and 0) and "no" where "yes" is expected
    assert (gold["domain_score"]["bob"]["correct"], gold["domain_score"]["bob"]["n"]) == (2, 2)
    assert (gold["domain_score"]["carol"]["correct"], gold["domain_score"]["carol"]["share"]) == (1, 0.5)
    assert (gold["nice"]["bob"]["share"], gold["nice"]["carol"]["share"]) == (1.0, 0.0)
    assert next(s for s in quality["gold"] if s["key"] == "domain_score")["all"]["share"] == 0.75


def test_results_page_api_and_exports_show_quality_and_each_items_kind(admin_client, checked, bob, carol):
    served = _repeats_served(_run(checked, [bob, carol]))
    html = admin_client.get(reverse("manage:campaign-results", args=[checked.pk])).content.decode()
    assert "Quality control" in html and "Self-agreement on repeated items" in html and "Accuracy on gold items" in html
    api = admin_client.get(f"/api/manage/campaigns/{checked.pk}/results/").json()
    assert api["quality"]["repeat_pairs"] == served and api["judgments"] == 20

    response = admin_client.get(f"/api/manage/campaigns/{checked.pk}/judgments.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    kinds = dict(Item.objects.filter(campaign=checked).values_list("code", "kind"))
    assert len(rows) == Judgment.objects.filter(campaign=checked).count() == 20 + served + 4
    assert all(row["item_kind"] == kinds[row["item_code"]] for row in rows)
    assert sorted({row["item_kind"] for row in rows}) == ["gold", "regular", "repeat"]
    detail = admin_client.get(reverse("manage:campaign", args=[checked.pk])).content.decode()
    assert "7 repeated and 2 gold items" in detail


def test_the_database_refuses_inconsistent_quality_items(checked):
    original = Item.objects.filter(campaign=checked, kind=Item.Kind.REGULAR).first()
    fields = {"campaign": checked, "source_id": original.source_id, "overlap": 1}
    for bad in (
        {"feature_index": 63, "kind": Item.Kind.REPEAT},  # a repeat without its original
        {"feature_index": 62, "kind": Item.Kind.REGULAR, "repeat_of": original},  # a regular item with one
        {"feature_index": original.feature_index, "kind": Item.Kind.REGULAR},  # the same feature twice
        {"feature_index": original.feature_index, "kind": Item.Kind.GOLD},  # a gold item of a regular feature
        {"feature_index": 62, "kind": "bonus"},  # no such kind
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Item.objects.create(**fields, **bad)
    Item.objects.create(**fields, feature_index=original.feature_index, kind=Item.Kind.REPEAT, repeat_of=original)
    with pytest.raises(IntegrityError), transaction.atomic():
        Campaign.objects.filter(pk=checked.pk).update(repeat_share=0.6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"repeat_share": 0.6}, "between 0 and 0.5"),
        ({"repeat_share": -0.1}, "between 0 and 0.5"),
        ({"gold": [{"sae": 0, "feature_index": 64, "expected": {"domain_score": 3}}]}, "features 0 to 63"),
        ({"gold": [{"sae": 0, "feature_index": 5, "expected": {"colour": "red"}}]}, 'No question "colour"'),
        ({"gold": [{"sae": 0, "feature_index": 5, "expected": {"comment": "hi"}}]}, "no single right answer"),
        ({"gold": [{"sae": 0, "feature_index": 5, "expected": {"domain_score": 7}}]}, "not a score"),
        ({"gold": [{"sae": 0, "feature_index": 5, "expected": {"nice": "maybe"}}]}, "expect yes or no"),
        ({"gold": [{"sae": 0, "feature_index": 5, "expected": {}}]}, "at least one expected answer"),
        ({"gold": [{"sae": 0, "feature_index": 5, "expected": {"nice": "y"}}] * 2}, "given twice"),
        ({"gold": [{"sae": None, "feature_index": 5, "expected": {"nice": "y"}}]}, "not one of this campaign"),
    ],
)
def test_campaign_create_refuses_bad_quality_settings(registry, bob, options, message):
    if "gold" in options:
        ids = {0: registry.saes[0].pk, None: 999_999}
        options = {
            "gold": [
                GoldSpec(sae_id=ids[g["sae"]], feature_index=g["feature_index"], expected=g["expected"])
                for g in options["gold"]
            ]
        }
    with pytest.raises(LabelError, match=message):
        campaign_draft(registry=registry, labellers=[bob], **options)
    assert not Campaign.objects.exists()


def _form(registry, users, **overrides) -> dict:
    # this campaign's own size, seed and overlap; no guidelines
    options = {"name": "Math with checks", "guidelines": "", "features_per_sae": 10, "seed": 4, "overlap": 1}
    return campaign_form(registry, users, **{**options, **overrides})


def test_the_campaign_form_takes_repeats_and_gold_lines(admin_client, registry, bob):
    a, b = registry.saes
    lines = f"{a.name} 12: domain_score=3, nice=yes\n\n{b.name} #7: general_score=0"
    response = admin_client.post(reverse("manage:campaign-new"), _form(registry, [bob], repeat_percent=20, gold=lines))
    campaign = Campaign.objects.get()
    assert response["Location"] == reverse("manage:campaign", args=[campaign.pk])
    assert campaign.repeat_share == 0.2
    assert campaign.gold == [
        {"sae_id": a.pk, "feature_index": 12, "expected": {"domain_score": 3, "nice": True}},
        {"sae_id": b.pk, "feature_index": 7, "expected": {"general_score": 0}},
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("zq-direct-sae: domain_score=3", "should look like"),
        ("no-such-sae 3: domain_score=3", '"no-such-sae" is not one of the chosen SAEs'),
        ("zq-direct-sae 3: domain_score", '"domain_score" should be question=answer'),
        ("zq-direct-sae 3:", "give the expected answers after the colon"),
        ("zq-direct-sae 99: domain_score=3", "features 0 to 63"),
        ("zq-direct-sae 3: domain_score=5", "not a score"),
        ("zq-direct-sae 3: nice=perhaps", "expect yes or no"),
        ("zq-direct-sae 3: comment=fine", "no single right answer"),
        ("zq-direct-sae 3: colour=red", 'No question "colour"'),
    ],
)
def test_bad_gold_lines_are_explained_at_their_field(admin_client, registry, bob, line, message):
    response = admin_client.post(reverse("manage:campaign-new"), _form(registry, [bob], gold=f"\n{line}"))
    html = response.content.decode()
    assert response.status_code == 200 and not Campaign.objects.exists()
    field = html.index('name="gold"')
    assert html.find(message.replace('"', "&quot;"), field) > field, message  # shown at the gold field
    # The summary at the top lists this one problem and links to the field; no other alert.
    summary = html[html.index('id="error-summary"') : field]
    assert summary.count("<li>") == 1 and 'href="#field-gold"' in summary
    assert html.count('role="alert"') == 1
    if "look like" in message or "question=answer" in message or "chosen SAEs" in message:
        assert "Gold line 2" in html  # the line is named (the first line is empty)


def test_the_api_creates_a_campaign_with_checks_and_refuses_bad_ones(admin_client, registry, bob):
    body = {
        "name": "API checks",
        "sources": [{"sae_id": s.pk, "n_features": 5} for s in registry.saes],
        "domain_corpus_id": registry.domain.pk,
        "general_corpus_id": registry.general.pk,
        "labeller_ids": [bob.pk],
        "repeat_share": 0.1,
        "gold": [{"sae_id": registry.saes[0].pk, "feature_index": 3, "expected": {"nice": False}}],
    }
    created = admin_client.post("/api/manage/campaigns/", body, "application/json")
    assert created.status_code == 201, created.content
    assert created.json()["repeat_share"] == 0.1 and created.json()["gold"][0]["expected"] == {"nice": False}
    bad = admin_client.post(
        "/api/manage/campaigns/", {**body, "name": "x", "repeat_share": 0.9}, "application/json"
    ).json()
    assert "repeat_share" in str(bad)
    bad = admin_client.post(
        "/api/manage/campaigns/",
        {**body, "name": "y", "gold": [{"sae_id": registry.saes[0].pk, "feature_index": 3, "expected": {"x": 1}}]},
        "application/json",
    )
    assert bad.status_code == 400 and 'No question \\"x\\"' in bad.content.decode()
