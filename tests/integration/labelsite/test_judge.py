"""The LLM judge: prompts from the blind panels only, answers held to the questions' schema and stored with
their provenance, a resumable job, and nothing of it visible to labellers. The LLM is a loopback endpoint."""

from __future__ import annotations

import pytest

from compute.jobs import job_run
from compute.models import Job, JobStatus, LLMCall
from labelsite.models import Campaign, Item, JudgeAnswer
from labelsite.services import LabelError
from labelsite.services.judge import answer_schema, campaign_judge_start, judge_messages, panel_text
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, registry_create
from tests.integration.labelsite.test_blinding_crawl import _crawl, _text
from tests.integration.labelsite.test_open_with_dashboards import real_campaign, world  # noqa: F401 - fixture
from tests.llm_server import GARBAGE, good

pytestmark = pytest.mark.django_db

JUDGE_MODEL = "qxv-judge-model"


def _panel(word: str) -> str:
    """A blind panel as panels.py writes it: one context, `word` shaded strongly, "cat" faintly."""
    return (
        '<div class="dash blind-panel"><h3>Strongest activations</h3><ul class="examples"><li><span class="ctx">'
        f'<span>the</span><span class="h12"> cat</span><span class="h85"> {word}</span></span></li></ul></div>'
    )


@pytest.fixture
def campaign(bob, carol):
    registry = registry_create(d_sae=900_000, names=("qxv-direct-math", "qxv-specialised-math"))
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob, carol], features=3))
    for item in Item.objects.filter(campaign=campaign):
        Item.objects.filter(pk=item.pk).update(
            domain_html=_panel(f"dom{item.pk}"), general_html=_panel(f"gen{item.pk}")
        )
    return campaign


@pytest.fixture
def endpoint(settings, llm_server):
    settings.LLM_BASE_URL = llm_server.base_url
    settings.LLM_MODEL = JUDGE_MODEL
    settings.LLM_RETRIES = 1
    settings.LLM_BACKOFF_S = 0.0
    return llm_server


def _run(job: Job) -> None:
    job.refresh_from_db()
    assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error


def test_panel_text_keeps_what_a_labeller_reads_and_marks_strong_tokens():
    assert panel_text(_panel("derivative")) == "Strongest activations\nthe cat [[derivative]]"


def test_schema_holds_each_score_and_choice_question_to_its_rubric_or_options():
    questions = [
        {"key": "domain_score", "type": "score", "prompt": "p", "rubric": [{"score": 0, "label": "a"}, {"score": 2, "label": "b"}]},
        {"key": "nice", "type": "yesno", "prompt": "p"},
        {"key": "kind", "type": "choice", "prompt": "p", "options": [{"value": "x", "label": "X"}, {"value": "y", "label": "Y"}]},
        {"key": "comment", "type": "text", "prompt": "p"},
    ]  # fmt: skip
    schema = answer_schema(questions)
    assert schema["required"] == ["domain_score", "kind"]
    assert schema["properties"]["domain_score"] == {"type": "integer", "enum": [0, 2]}
    assert schema["properties"]["kind"] == {"type": "string", "enum": ["x", "y"]}
    assert schema["additionalProperties"] is False


def test_judge_answers_every_item_from_its_panels_and_keeps_the_calls(campaign, endpoint):
    items = list(Item.objects.filter(campaign=campaign, kind=Item.Kind.REGULAR).order_by("pk"))
    expected = {item.pk: {"domain_score": item.pk % 4, "general_score": (item.pk + 1) % 4} for item in items}
    # the first answer is prose: asked again, the model answers properly
    endpoint.reply(GARBAGE, *[good(expected[item.pk]) for item in items])
    job = campaign_judge_start(campaign_id=campaign.pk, batch_size=4)
    assert campaign_judge_start(campaign_id=campaign.pk).pk == job.pk  # a double click queues nothing twice
    _run(job)

    stored = {a.item_id: a for a in JudgeAnswer.objects.filter(campaign=campaign).select_related("call")}
    assert {pk: a.answers for pk, a in stored.items()} == expected
    calls = LLMCall.objects.filter(purpose="judge", job=job)
    assert calls.count() == len(items) and all(a.model == JUDGE_MODEL for a in stored.values())
    first = stored[items[0].pk].call
    assert len(first.attempts) == 1 and "no JSON" in first.attempts[0]["error"]
    for item in items:
        prompt = "\n".join(m["content"] for m in stored[item.pk].call.messages)
        assert f" [[dom{item.pk}]]" in prompt and f" [[gen{item.pk}]]" in prompt
        assert "Top activations on domain text" in prompt and "Score the explanation from the domain examples" in prompt
        assert "qxv-" not in prompt and str(item.feature_index) not in prompt  # never the source
    sent_schema = endpoint.requests[-1]["json"]["response_format"]["json_schema"]["schema"]
    assert sent_schema == answer_schema(campaign.questions)
    assert job.__class__.objects.get(pk=job.pk).result["answered"] == len(items)

    # a second run asks nothing for the items already answered
    asked = len(endpoint.requests)
    _run(campaign_judge_start(campaign_id=campaign.pk))
    assert len(endpoint.requests) == asked


def test_a_failed_judge_keeps_the_answers_it_had(campaign, endpoint):
    items = list(Item.objects.filter(campaign=campaign).order_by("pk"))
    endpoint.reply(good({"domain_score": 1, "general_score": 1}))
    endpoint.default = GARBAGE  # every later answer is prose, twice
    job = campaign_judge_start(campaign_id=campaign.pk)
    job.refresh_from_db()
    assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.FAILED
    job.refresh_from_db()
    assert f"item {items[1].pk}" in job.error and "no valid JSON" in job.error
    assert list(JudgeAnswer.objects.values_list("item_id", flat=True)) == [items[0].pk]
    assert LLMCall.objects.filter(purpose="judge").exclude(error="").count() == 1


def test_start_refuses_a_campaign_without_items_or_questions(bob):
    registry = registry_create()
    draft = campaign_draft(registry=registry, labellers=[bob])
    with pytest.raises(LabelError, match="open it first"):
        campaign_judge_start(campaign_id=draft.pk)
    opened = campaign_open_offline(draft)
    Campaign.objects.filter(pk=opened.pk).update(questions=[q for q in opened.questions if q["type"] == "text"])
    with pytest.raises(LabelError, match="no score or choice question"):
        campaign_judge_start(campaign_id=opened.pk)
    with pytest.raises(LabelError, match="max_tokens"):
        campaign_judge_start(campaign_id=opened.pk, max_tokens=5)


def test_labellers_never_see_the_judge(client, campaign, endpoint, bob):
    items = list(Item.objects.filter(campaign=campaign).order_by("pk"))
    endpoint.default = good({"domain_score": 3, "general_score": 3})
    _run(campaign_judge_start(campaign_id=campaign.pk))
    assert JudgeAnswer.objects.count() == len(items)
    client.force_login(bob)
    codes = list(Item.objects.filter(campaign=campaign).values_list("code", flat=True))
    starts = ["/", "/label/", "/api/label/campaigns/"] + [f"/api/label/items/{c}/" for c in codes]
    fetched = _crawl(client, starts)
    assert len(fetched) > 5
    for response in fetched:
        text = _text(response)
        assert JUDGE_MODEL not in text and "judge_answer" not in text


def test_the_prompt_follows_the_campaigns_guidelines_and_panels(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(guidelines="Prefer **specific** concepts.")
    campaign.refresh_from_db()
    item = Item.objects.filter(campaign=campaign).first()
    Item.objects.filter(pk=item.pk).update(general_html="")
    item.refresh_from_db()
    system, user = judge_messages(campaign, item)
    assert "Prefer **specific** concepts." in system["content"]
    assert "Top activations on general web text" not in user["content"]  # no panel, no heading
    assert user["content"].count("- ") == 2  # the two score questions, not the text or yes/no ones


def test_judge_only_features_are_drawn_besides_and_never_served_to_labellers(registry, bob, carol):
    from labelsite.selectors.admin import campaign_progress
    from tests.integration.labelsite.test_assignment import _drain

    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=[bob, carol], features=5, judge_only_features=7)
    )
    for source in campaign.sources.all():
        regular = set(source.items.filter(kind=Item.Kind.REGULAR).values_list("feature_index", flat=True))
        judge_only = set(source.items.filter(kind=Item.Kind.JUDGE).values_list("feature_index", flat=True))
        assert len(regular) == 5 and len(judge_only) == 7 and not regular & judge_only
    assert set(Item.objects.filter(kind=Item.Kind.JUDGE).values_list("overlap", flat=True)) == {0}
    served = _drain(campaign, bob) + _drain(campaign, carol)
    assert len(served) == 10
    assert not Item.objects.filter(code__in=served, kind=Item.Kind.JUDGE).exists()
    progress = campaign_progress(campaign=campaign)
    assert progress["items"] == 10 and progress["items_complete"] == 10


def test_judge_only_features_need_random_sampling_and_enough_features(registry, bob):
    with pytest.raises(LabelError, match="random sampling"):
        campaign_draft(registry=registry, labellers=[bob], judge_only_features=3, sampling="matched")
    draft = campaign_draft(registry=registry, labellers=[bob], features=10, judge_only_features=60, name="Too many")
    with pytest.raises(LabelError, match="at most 54 judge-only"):
        campaign_open_offline(draft)


def test_judge_only_items_get_rendered_blind_panels_when_a_campaign_opens_for_real(world, alice, bob):  # noqa: F811
    from compute.jobs import job_run as run
    from labelsite.services.campaigns import OPEN_JOB_KIND, campaign_open

    campaign = real_campaign(world, bob, name="Judge-only, real dashboards", judge_only_features=4)
    campaign = campaign_open(campaign_id=campaign.pk, user=alice)
    for job in campaign.build_jobs.all():
        assert run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, job.error
    for opener in campaign.build_jobs.filter(kind=OPEN_JOB_KIND, status=JobStatus.QUEUED):
        assert run(job_id=opener.pk, attempt=opener.attempt) == JobStatus.SUCCEEDED
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.OPEN
    judge_only = list(Item.objects.filter(campaign=campaign, kind=Item.Kind.JUDGE))
    assert len(judge_only) == 8
    for item in judge_only:
        assert 'class="dash blind-panel"' in item.domain_html and 'class="dash blind-panel"' in item.general_html
        assert "qxv-" not in item.domain_html + item.general_html
