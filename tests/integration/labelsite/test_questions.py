"""Questions as data: a campaign declaring its own questions gets them validated, in its form, its keyboard
map, its API, its exports and its summaries, with no code naming them."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from labelsite.models import Item, Judgment
from labelsite.questions import QuestionError, answers_clean, questions_validate, shortcuts
from labelsite.selectors.results import campaign_results
from labelsite.services import LabelError
from labelsite.services.assignment import assignment_next
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db

CUSTOM = [
    {"key": "summary", "type": "text", "prompt": "What does the feature track?", "required": True, "panel": "domain"},
    {"key": "sharpness", "type": "score", "prompt": "How sharp is it?", "required": True, "panel": "domain",
     "rubric": [{"score": 1, "label": "blurry"}, {"score": 2, "label": "sharp"}]},
    {"key": "kind", "type": "choice", "prompt": "Kind of feature", "required": False, "panel": None,
     "options": [{"value": "token", "label": "A token"}, {"value": "concept", "label": "A concept"}]},
    {"key": "dead", "type": "yesno", "prompt": "Looks dead", "required": False, "panel": None},
    {"key": "split", "type": "per_component", "prompt": "Which parts are real?", "required": False, "panel": None,
     "options": [{"value": "real", "label": "real"}, {"value": "noise", "label": "noise"}]},
]  # fmt: skip


def test_each_type_is_checked():
    qs = questions_validate(CUSTOM)
    ok = answers_clean(qs, {"summary": " dates ", "sharpness": "2", "kind": "token", "dead": "on",
                            "split": {"c1": "real"}, "unasked": 1})  # fmt: skip
    assert ok == {"summary": "dates", "sharpness": 2, "kind": "token", "dead": True, "split": {"c1": "real"}}
    assert answers_clean(qs, {"summary": "x", "sharpness": 1}) == {
        "summary": "x", "sharpness": 1, "kind": None, "dead": False, "split": {}
    }  # fmt: skip
    bad = [
        ({"sharpness": 1}, "What does the feature track"),  # required text
        ({"summary": "x"}, "How sharp is it"),  # required score
        ({"summary": "x", "sharpness": 3}, "not a score"),
        ({"summary": "x", "sharpness": 1.5}, "not a score"),
        ({"summary": "x", "sharpness": 1, "kind": "neither"}, "not an option"),
        ({"summary": "x", "sharpness": 1, "split": {"c1": "maybe"}}, "not an option"),
        ({"summary": "x" * 5001, "sharpness": 1}, "longer than 5000"),
    ]
    for answers, message in bad:
        with pytest.raises(QuestionError, match=message):
            answers_clean(qs, answers)


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ([{"key": "a", "type": "text", "prompt": "p"}, {"key": "a", "type": "text", "prompt": "q"}], "distinct"),
        ([{"key": "A b", "type": "text", "prompt": "p"}], "must start with a letter"),
        ([{"key": "revisions", "type": "text", "prompt": "p"}], "reserved"),
        ([{"key": "a", "type": "essay", "prompt": "p"}], "choose from"),
        ([{"key": "a", "type": "choice", "prompt": "p"}], "needs a list of options"),
        ([{"key": "a", "type": "text", "prompt": "p", "panel": "left"}], "panel"),
        ([{"key": "a", "type": "score", "prompt": "p", "rubric": [{"score": 10, "label": "x"}]}], "between 0 and 9"),
    ],
)
def test_bad_question_lists_are_explained(questions, message):
    with pytest.raises(QuestionError, match=message):
        questions_validate(questions)


def test_yes_no_questions_get_free_letters():
    qs = [{"key": k, "type": "yesno", "prompt": k} for k in ("nice", "notable", "skippable", "good")]
    # n taken by nice; notable -> o; skippable may not take s (skip) -> k; good may not take g -> o taken -> d
    assert shortcuts(questions_validate(qs)) == {"nice": "n", "notable": "o", "skippable": "k", "good": "d"}


@pytest.fixture
def custom(registry, bob, carol):
    return campaign_open_offline(
        campaign_draft(registry=registry, labellers=[bob, carol], overlap=2, features=2, questions=CUSTOM)
    )


def _take(campaign, user) -> str:
    return Item.objects.get(pk=assignment_next(campaign_id=campaign.pk, labeller=user).item_id).code


def test_the_labelling_page_and_its_keys_follow_the_questions(client, custom, bob):
    client.force_login(bob)
    code = _take(custom, bob)
    html = client.get(reverse("label:item", args=[code])).content.decode()
    assert 'name="summary"' in html and "What does the feature track?" in html
    assert 'data-digit="2"' in html and "sharp" in html  # score radios keyed by their score
    assert 'name="kind" value="concept"' in html and 'data-digit="2"' in html  # choices keyed 1..n
    assert 'data-shortcut="d"' in html  # "dead" gets d
    assert "domain_score" not in html and 'name="nice"' not in html
    response = client.post(reverse("label:item", args=[code]), {"sharpness": "2"})
    assert response.status_code == 200 and "Answer “What does the feature track?”." in response.content.decode()
    response = client.post(reverse("label:item", args=[code]), {"summary": "years", "sharpness": "2", "kind": "concept",
                                                               "dead": "on"})  # fmt: skip
    assert response.status_code == 302
    judgment = Judgment.objects.get(item__code=code, labeller=bob)
    assert judgment.answers == {
        "summary": "years", "sharpness": 2, "kind": "concept", "dead": True, "split": {}, "source_guess": None
    }  # fmt: skip
    mine = client.get(reverse("label:mine", args=[custom.pk])).content.decode()
    assert "years" in mine and "How sharp is it?" in mine


def test_api_exports_and_summary_follow_the_questions(client, custom, alice, bob, carol):
    answers = {bob: ("token", 1, True), carol: ("concept", 2, False)}
    for user, (kind, sharp, dead) in answers.items():
        client.force_login(user)
        while (a := assignment_next(campaign_id=custom.pk, labeller=user)) is not None:
            code = Item.objects.get(pk=a.item_id).code
            body = {"summary": f"{user.username} {code}", "sharpness": sharp, "kind": kind, "dead": dead,
                    "split": {"c1": "real", "c2": "noise"}}  # fmt: skip
            response = client.post(reverse("label-api:judge", args=[code]), body, content_type="application/json")
            assert response.status_code == 201, response.content
            assert response.json()["answers"]["split"] == {"c1": "real", "c2": "noise"}
    with pytest.raises(LabelError, match="not a score"):
        judgment_submit(item_code=code, labeller=carol, answers={"summary": "x", "sharpness": 0})

    client.force_login(alice)
    response = client.get(reverse("manage-api:judgments-export", args=[custom.pk, "csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 8
    columns = list(rows[0])
    first = columns.index("labeller") + 1  # the answer columns follow the item and labeller columns
    assert columns[first : first + 5] == ["summary", "sharpness", "kind", "dead", "split"]
    assert sorted(r["kind"] for r in rows) == ["concept"] * 4 + ["token"] * 4
    assert {r["split"] for r in rows} == {'{"c1": "real", "c2": "noise"}'}

    results = campaign_results(campaign=custom, n_resamples=100)
    (sharpness,) = results["scores"]
    assert len(sharpness["per_source"]) == 2
    for got in sharpness["per_source"].values():  # each SAE: 2 items, each judged by bob (1) and carol (2)
        assert got["estimate"]["n"] == 4 and got["estimate"]["mean"] == 1.5
        assert {k: v["count"] for k, v in got["distribution"].items()} == {"1": 2, "2": 2}
    (dead,) = results["flags"]
    assert all(e["yes"] == 2 and e["judgments"] == 4 for e in dead["per_source"].values())
    (kind,) = results["choices"]
    assert all({k: v["count"] for k, v in c.items()} == {"token": 2, "concept": 2} for c in kind["per_source"].values())
    assert next(r for r in results["per_labeller"] if r["labeller"] == "bob")["questions"]["sharpness"]["mean"] == 1
    agreement = {a["key"]: a for a in results["agreement"]}
    # ordinal for the score, nominal for the choice and for each (feature, component) of the split
    assert set(agreement) == {"sharpness", "kind", "split"}
    (split,) = agreement["split"]["pairs"]
    assert split["shared"] == 8 and split["percent_agreement"] == 100.0  # 4 features x 2 components, all equal
    assert agreement["kind"]["pairs"][0]["percent_agreement"] == 0
    assert agreement["sharpness"]["pairs"][0]["shared"] == 4
    assert agreement["sharpness"]["pairs"][0]["percent_agreement"] == 0
