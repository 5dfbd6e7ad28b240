"""Migrating a populated database from answer columns to question objects and `answers` loses nothing,
and migrating back restores the columns."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

OLD = ("labelsite", "0001_initial")
RUBRIC = [{"score": 1, "label": "vague"}, {"score": 5, "label": "sharp"}]


def _migrate(targets: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def _targets(labelsite_node: tuple[str, str] | None) -> list[tuple[str, str]]:
    graph = MigrationExecutor(connection).loader.graph
    others = [n for n in graph.leaf_nodes() if n[0] != "labelsite"]
    mine = [labelsite_node] if labelsite_node else [n for n in graph.leaf_nodes() if n[0] == "labelsite"]
    return mine + others


def _populate(apps) -> dict:
    user = apps.get_model("auth", "User")
    lm_model, corpus, sae_model = (apps.get_model("compute", n) for n in ("LanguageModel", "Corpus", "SAE"))
    campaign_model, source_model, item_model, judgment_model = (
        apps.get_model("labelsite", n) for n in ("Campaign", "CampaignSAE", "Item", "Judgment")
    )
    bob, carol = user.objects.create(username="bob"), user.objects.create(username="carol")
    lm = lm_model.objects.create(name="m", source="package", location="x")
    domain = corpus.objects.create(name="d", kind="domain", source="demo", location="d")
    general = corpus.objects.create(name="g", kind="general", source="demo", location="g")
    sae = sae_model.objects.create(
        name="s", method="direct", status="ready", language_model=lm, hook_name="h", d_in=4, d_sae=8
    )
    full = campaign_model.objects.create(
        name="full", rubric=RUBRIC, questions=["domain", "general", "nice", "comment"],
        domain_corpus=domain, general_corpus=general, overlap=2,
    )  # fmt: skip
    partial = campaign_model.objects.create(
        name="partial", questions=["domain", "nice"], domain_corpus=domain, general_corpus=general
    )
    judgments = {}
    for campaign in (full, partial):
        source = source_model.objects.create(campaign=campaign, sae=sae, n_features=2)
        for i in range(2):
            item = item_model.objects.create(campaign=campaign, source=source, feature_index=i, overlap=2)
            for user_ in (bob, carol):
                judgments[(campaign.name, i, user_.username)] = judgment_model.objects.create(
                    item=item, campaign=campaign, labeller=user_, time_spent_ms=1000 + i, revisions=i,
                    panel_order="general,domain",
                    domain_explanation=f"énoncé {i} {user_.username}", domain_score=(1, 5)[i],
                    general_explanation=f"general {i}" if campaign is full else "",
                    general_score=(5 if i else None) if campaign is full else None,
                    nice=bool(i), comment="=1+1" if campaign is full and i else "",
                    extra={"decomposition": "a"} if i else {},
                )  # fmt: skip
    # A value a campaign did not ask for (written around the services): kept, not dropped.
    stray = judgments[("partial", 0, "bob")]
    stray.general_score = 2
    stray.save()
    return {k: (j.pk, j.time_spent_ms, j.revisions, j.panel_order) for k, j in judgments.items()}


def test_populated_database_migrates_forward_and_back_without_loss():
    old_apps = _migrate(_targets(OLD))
    before = _populate(old_apps)

    apps = _migrate(_targets(None))
    campaign_model, judgment_model = apps.get_model("labelsite", "Campaign"), apps.get_model("labelsite", "Judgment")
    assert not any(f.name == "domain_score" for f in judgment_model._meta.get_fields())
    full, partial = campaign_model.objects.get(name="full"), campaign_model.objects.get(name="partial")
    assert [(q["key"], q["type"], q["panel"], q["required"]) for q in full.questions] == [
        ("domain_explanation", "text", "domain", False),
        ("domain_score", "score", "domain", True),
        ("general_explanation", "text", "general", False),
        ("general_score", "score", "general", True),
        ("nice", "yesno", None, False),
        ("comment", "text", None, False),
    ]
    assert [q["rubric"] for q in full.questions if q["type"] == "score"] == [RUBRIC, RUBRIC]
    assert [q["key"] for q in partial.questions] == ["domain_explanation", "domain_score", "nice"]
    default_levels = [0, 1, 2, 3]  # the campaign had the default rubric
    assert [lv["score"] for lv in partial.questions[1]["rubric"]] == default_levels

    got = {
        (j.campaign.name, j.item.feature_index, j.labeller.username): j
        for j in judgment_model.objects.select_related("campaign", "item", "labeller")
    }
    assert set(got) == set(before)
    for (name, i, who), (pk, ms, revisions, order) in before.items():
        j = got[(name, i, who)]
        assert (j.pk, j.time_spent_ms, j.revisions, j.panel_order) == (pk, ms, revisions, order)
        if name == "full":
            expected = {
                "domain_explanation": f"énoncé {i} {who}", "domain_score": (1, 5)[i],
                "general_explanation": f"general {i}", "general_score": 5 if i else None,
                "nice": bool(i), "comment": "=1+1" if i else "",
            }  # fmt: skip
        else:
            expected = {"domain_explanation": f"énoncé {i} {who}", "domain_score": (1, 5)[i], "nice": bool(i)}
            if (i, who) == (0, "bob"):
                expected["general_score"] = 2
        if i:
            expected["decomposition"] = "a"
        assert j.answers == expected, (name, i, who)

    old_apps = _migrate(_targets(OLD))
    campaign_model, judgment_model = (old_apps.get_model("labelsite", n) for n in ("Campaign", "Judgment"))
    full, partial = campaign_model.objects.get(name="full"), campaign_model.objects.get(name="partial")
    assert (full.rubric, full.questions) == (RUBRIC, ["domain", "general", "nice", "comment"])
    assert partial.questions == ["domain", "nice"]
    j = judgment_model.objects.get(campaign=full, item__feature_index=1, labeller__username="carol")
    assert (j.domain_explanation, j.domain_score, j.general_explanation, j.general_score, j.nice, j.comment) == (
        "énoncé 1 carol", 5, "general 1", 5, True, "=1+1"
    )  # fmt: skip
    assert j.extra == {"decomposition": "a"}
    stray = judgment_model.objects.get(campaign=partial, item__feature_index=0, labeller__username="bob")
    assert (stray.general_score, stray.general_explanation, stray.extra) == (2, "", {})
    _migrate(_targets(None))
