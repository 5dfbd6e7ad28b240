"""The demo study's orchestration at tiny scale: every stage (training with a sweep, the study evaluated,
dashboards, automated explanations, decompositions, the blind campaign opened after its audit) runs through
the features' own services and jobs; a second run reuses everything and creates nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from compute.jobs import job_run
from compute.models import (
    SAE,
    DashboardSet,
    Decomposition,
    Explanation,
    Job,
    JobStatus,
    Study,
    StudyEvaluation,
)
from labelsite.models import Campaign, Item
from labelsite.selectors.demo import demo_status
from labelsite.services.demo import STAGES, Demo, DemoConfig, DemoError
from tests.integration.compute.test_decomposition import proposal
from tests.integration.compute.test_training_service import setup, tiny_model_dir  # noqa: F401
from tests.llm_server import Reply, good
from tests.synthetic_features import RuleLLMServer

pytestmark = pytest.mark.django_db


class DemoLLMServer(RuleLLMServer):
    """Explains and scores like a literal model; proposes sub-components when asked for them (JSON)."""

    def _next(self, path: str, headers: dict, payload: Any) -> Reply:
        if isinstance(payload, dict) and "component" in payload["messages"][0]["content"].lower():
            return good(proposal(n_components=3, n_phrases=3))
        return super()._next(path, headers, payload)


@pytest.fixture
def endpoint(settings):
    server = DemoLLMServer().start()
    settings.LLM_BASE_URL = server.base_url
    settings.LLM_MODEL = "rule-model"
    settings.LLM_RETRIES = 1
    settings.LLM_BACKOFF_S = 0.01
    yield server
    server.stop()


def tiny_config(setup) -> DemoConfig:  # noqa: F811
    return DemoConfig(
        model_id=setup["model"].pk,
        general_id=setup["web"].pk,
        domain_id=setup["science"].pk,
        training={
            "methods": ["gsae", "finetune", "direct", "ssae"],
            "name_prefix": "demo",
            "hook_name": "blocks.0.hook_resid_post",
            "gsae_expansion": 4,
            "domain_expansion": 2,
            "l1_coefficients": [0.3, 3.0],
            "gsae_l1_coefficient": 0.3,
            "lr": 1e-2,
            "gsae_tokens": 6000,
            "domain_tokens": 4000,
            "eval_tokens": 1024,
            "context_size": 32,
            "batch_size": 16,
            "minibatch_tokens": 256,
        },
        study_options={"eval_tokens": 512, "frequency_tokens": 1024, "context_size": 32, "batch_size": 8},
        dashboard_params={"max_tokens": 2048, "context_size": 32, "batch_size": 8},
        n_features=4,
        overlap=2,
        n_explain=2,
        n_decompose=1,
        decomposition={"n_components": 3, "n_phrases": 3},
    )


def drive(demo: Demo, limit: int = 60) -> list[int]:
    """Step the demo, running each job it queued in this process (as a worker would), until it is done."""
    ran = []
    for _ in range(limit):
        demo.step()
        if demo.finished:
            return ran
        queued = list(Job.objects.filter(status=JobStatus.QUEUED).order_by("pk"))
        assert queued, f"stalled at {[s.name for s in demo.states.values() if not s.done]}"
        for job in queued:
            job_run(job_id=job.pk, attempt=job.attempt)
            ran.append(job.pk)
    raise AssertionError("the demo did not finish")


def counts() -> dict[str, int]:
    return {
        "jobs": Job.objects.count(),
        "saes": SAE.objects.count(),
        "studies": Study.objects.count(),
        "evaluations": StudyEvaluation.objects.count(),
        "dashboard_sets": DashboardSet.objects.count(),
        "explanations": Explanation.objects.count(),
        "decompositions": Decomposition.objects.count(),
        "campaigns": Campaign.objects.count(),
        "items": Item.objects.count(),
    }


def test_the_demo_runs_every_stage_once_and_a_second_run_reuses_everything(setup, endpoint):  # noqa: F811
    users = get_user_model().objects
    admin = users.create_user("admin", is_staff=True, is_superuser=True)
    labellers = [users.create_user(f"labeller{i}").pk for i in (1, 2)]
    config = tiny_config(setup)
    assert demo_status(prefix="demo", campaign_name=config.campaign_name)["ready"] is False  # nothing yet

    ran = drive(Demo(config, admin=admin, labeller_ids=labellers))
    assert all(Job.objects.get(pk=pk).status == JobStatus.SUCCEEDED for pk in ran)
    first = counts()

    # Every stage's artifact, exactly once.
    train = Job.objects.get(kind="train_saes")
    methods = sorted(SAE.objects.filter(job=train, status="ready").values_list("method", flat=True))
    assert methods == ["direct", "direct", "finetune", "finetune", "gsae", "ssae", "ssae"]  # sweep of two
    study = Study.objects.get(training_job=train)
    assert first["studies"] == 1 and first["evaluations"] == 1
    assert {r["method"] for r in study.evaluations.get().results["rows"]} >= {"gsae", "finetune", "direct", "ssae"}
    assert first["dashboard_sets"] == 4 and DashboardSet.objects.filter(status="ready").count() == 4
    explained = Explanation.objects.filter(source="auto")
    assert explained.count() == 2 * 2  # two features for each of Direct and SSAE
    measured = Decomposition.objects.filter(status="measured")
    assert first["decompositions"] == 2 and measured.count() == 2
    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.OPEN
    # it opened on its presentation: the swap test and the presentation audit passed; the content is reported
    presentation = campaign.audit["presentation"]
    assert presentation["swap_test"]["passed"] and presentation["verdict"] == "pass"
    assert campaign.audit["content"]["summary"]
    assert campaign.sampling == Campaign.Sampling.MATCHED and campaign.overlap == 2
    assert campaign.sources.count() == 2 and campaign.items.exists()
    assert {s.sae.method for s in campaign.sources.select_related("sae")} == {"direct", "ssae"}
    status = demo_status(prefix="demo", campaign_name=config.campaign_name)  # what CI asserts after make demo
    assert status["ready"] is True, status
    assert status["study"] == {
        "id": study.pk,
        "evaluated": True,
        "figures": dict.fromkeys(["pareto", "rarity", "novelty"], True),
    }
    assert status["campaign"]["status"] == "open" and status["campaign"]["items"] == campaign.items.count()
    assert len(status["campaign"]["sources"]) == 2

    # A second run (a re-run of `make demo`): every stage done at once, nothing new.
    again = Demo(config, admin=admin, labeller_ids=labellers)
    states = again.step()
    assert again.finished and [s for s in STAGES if states[s].done] == STAGES
    assert counts() == first
    assert not Job.objects.filter(status=JobStatus.QUEUED).exists()


def test_a_job_that_fails_between_steps_stops_the_demo_and_is_not_queued_again(setup, endpoint):  # noqa: F811
    admin = get_user_model().objects.create_user("admin", is_staff=True, is_superuser=True)
    demo = Demo(tiny_config(setup), admin=admin)
    for _ in range(20):  # up to the dashboards: their jobs are queued
        demo.step()
        if demo.states["dashboards"].jobs:
            break
        for job in Job.objects.filter(status=JobStatus.QUEUED).order_by("pk"):
            job_run(job_id=job.pk, attempt=job.attempt)
    builds = Job.objects.filter(kind="build_dashboards")
    assert builds.count() == 4 and not builds.exclude(status=JobStatus.QUEUED).exists()
    (setup["tmp"] / "science.txt").unlink()  # the domain corpus goes missing before a worker takes the jobs
    for job in builds.order_by("pk"):
        job_run(job_id=job.pk, attempt=job.attempt)
    assert builds.filter(status=JobStatus.FAILED).count() == 2  # the two sets on the domain text
    with pytest.raises(DemoError, match=r"dashboards: Job \d+ \(build_dashboards\) failed: .*science") as failed:
        demo.step()
    first_failed = builds.filter(status=JobStatus.FAILED).order_by("pk").first()
    assert failed.value.stage == "dashboards" and failed.value.path == f"/compute/jobs/{first_failed.pk}/"
    assert "Retry" in failed.value.fix and "no dashboards yet" in failed.value.meaning
    assert builds.count() == 4  # stopped with the job's message, nothing queued again
