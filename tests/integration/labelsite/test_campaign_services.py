"""Campaign creation checks, seeded sampling, open/close/reopen and reassign."""

from __future__ import annotations

import random

import pytest

from labelsite.models import Assignment, Campaign, Item
from labelsite.questions import DEFAULT_RUBRIC
from labelsite.services import LabelError
from labelsite.services.assignment import assignment_next
from labelsite.services.campaigns import (
    SourceSpec,
    campaign_close,
    campaign_create,
    campaign_reassign,
    campaign_reopen,
    rubric_format,
    rubric_parse,
)
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db


def test_default_rubric_is_the_studys_subject_specificity_scale(registry, bob):
    campaign = campaign_draft(registry=registry, labellers=[bob])
    scored = [q for q in campaign.questions if q["type"] == "score"]
    assert [q["key"] for q in scored] == ["domain_score", "general_score"]
    for q in scored:
        assert [level["score"] for level in q["rubric"]] == [0, 1, 2, 3]
        assert q["rubric"][3]["label"] == "A concept specific to the subject"
    assert [q["key"] for q in campaign.questions] == [
        "domain_explanation",
        "domain_score",
        "general_explanation",
        "general_score",
        "nice",
        "comment",
        "source_guess",  # two sources: labellers may guess which, by letter
    ]
    assert campaign.sources.get(sae=registry.saes[0]).n_features == 10


def test_rubric_text_round_trips_and_rejects_bad_lines():
    assert rubric_parse(rubric_format(DEFAULT_RUBRIC)) == DEFAULT_RUBRIC
    with pytest.raises(LabelError, match="distinct"):
        rubric_parse("1: a\n1: b")
    with pytest.raises(LabelError, match="between 0 and 9"):
        rubric_parse("12: too big")
    with pytest.raises(LabelError, match="should look like"):
        rubric_parse("no separator here")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"swap_corpora": True}, "domain corpus"),
        ({"overlap": 3}, "needs at least 3 labellers"),
        ({"n_features": 65}, "has 64 features"),
        ({"questions": ["bogus"]}, 'Unknown question "bogus"'),
        ({"questions": []}, "at least one question"),
        ({"questions": [{"key": "x", "type": "score", "prompt": "p", "rubric": []}]}, "at least one level"),
        ({"min_frequency": 2.0}, "between 0 and 1"),
    ],
)
def test_create_explains_what_is_wrong(registry, bob, carol, change, message):
    domain, general = registry.domain, registry.general
    if change.get("swap_corpora"):
        domain, general = general, domain
    with pytest.raises(LabelError, match=message):
        campaign_create(
            name="c",
            domain_corpus_id=domain.pk,
            general_corpus_id=general.pk,
            sources=[SourceSpec(sae_id=registry.saes[0].pk, n_features=change.get("n_features", 5))],
            labeller_ids=[bob.pk, carol.pk],
            overlap=change.get("overlap", 1),
            questions=change.get("questions"),
            min_frequency=change.get("min_frequency"),
        )


def test_unready_sae_is_refused(registry, bob):
    registry.saes[0].status = "training"
    registry.saes[0].save()
    with pytest.raises(LabelError, match="not ready"):
        campaign_draft(registry=registry, labellers=[bob])


def test_sampling_is_seeded_per_sae_and_draws_distinct_features(registry, bob):
    a = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], seed=7, name="a"))
    b = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], seed=7, name="b"))
    c = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], seed=8, name="c"))

    def features(campaign):
        return {
            sae.pk: sorted(
                Item.objects.filter(campaign=campaign, source__sae=sae).values_list("feature_index", flat=True)
            )
            for sae in registry.saes
        }

    fa, fb, fc = features(a), features(b), features(c)
    assert fa == fb
    assert fa != fc
    for sae in registry.saes:
        # Independent recomputation of the documented draw: random.Random(f"{seed}:{sae_id}").sample(range(d_sae), n)
        assert fa[sae.pk] == sorted(random.Random(f"7:{sae.pk}").sample(list(range(64)), 10))
        assert len(set(fa[sae.pk])) == 10
    codes = list(Item.objects.values_list("code", flat=True))
    assert len(codes) == len(set(codes)) == 60
    assert all(i.overlap == 1 for i in Item.objects.filter(campaign=a))


def test_close_releases_leases_and_reopen_allows_labelling_again(open_campaign, bob):
    held = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    campaign_close(campaign_id=open_campaign.pk)
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.EXPIRED
    assert Item.objects.get(pk=held.item_id).slots_taken == 0
    with pytest.raises(LabelError, match="closed"):
        assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    with pytest.raises(LabelError, match="Only an open campaign"):
        campaign_close(campaign_id=open_campaign.pk)
    campaign_reopen(campaign_id=open_campaign.pk)
    assert assignment_next(campaign_id=open_campaign.pk, labeller=bob) is not None


def test_reassign_releases_held_items_and_swaps_labellers(open_campaign, bob, carol, alice):
    held = assignment_next(campaign_id=open_campaign.pk, labeller=bob)
    released = campaign_reassign(campaign_id=open_campaign.pk, from_user_id=bob.pk, to_user_id=alice.pk)
    assert released == 1
    assert Item.objects.get(pk=held.item_id).slots_taken == 0
    assert set(open_campaign.labellers.all()) == {carol, alice}
    with pytest.raises(LabelError, match="not a labeller"):
        assignment_next(campaign_id=open_campaign.pk, labeller=bob)


def test_mapping_can_be_hidden_from_admins_until_closed(registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], hide_mapping_until_closed=True))
    assert not campaign.mapping_visible
    campaign_close(campaign_id=campaign.pk)
    assert Campaign.objects.get(pk=campaign.pk).mapping_visible
