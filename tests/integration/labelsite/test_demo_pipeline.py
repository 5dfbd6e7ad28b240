"""The demo's main job on a tiny model: train GSAE + Direct + SSAE, then a blind campaign opens over both."""

from __future__ import annotations

import pytest

from compute.jobs import job_run
from compute.models import SAE, Corpus, Job, JobStatus
from labelsite.models import Campaign, Item
from labelsite.services import LabelError
from labelsite.services.campaigns import OPEN_JOB_KIND
from labelsite.services.demo import DEMO_CAMPAIGN, demo_campaign_open, demo_training_start
from tests.factories import tiny_language_model

pytestmark = pytest.mark.django_db

SCIENCE = "The radio emission of the moon is a new source of information about its surface temperature. " * 4
WEB = "The committee met on Monday to discuss the draft, and the film was long but worth it. " * 4
SMALL = {"gsae_tokens": 3000, "domain_tokens": 2000, "gsae_expansion": 4, "context_size": 32, "eval_tokens": 256}


@pytest.fixture
def world(tmp_path, artifacts, alice, bob, carol):
    lm = tiny_language_model(tmp_path / "lm", hook="blocks.1.hook_resid_post")
    (tmp_path / "science.txt").write_text("\n\n".join([SCIENCE] * 40))
    (tmp_path / "web.txt").write_text("\n\n".join([WEB] * 40))
    domain = Corpus.objects.create(name="sci", kind="domain", source="files", location=str(tmp_path / "science.txt"))
    general = Corpus.objects.create(name="web", kind="general", source="files", location=str(tmp_path / "web.txt"))
    return {"lm": lm, "domain": domain, "general": general}


def test_demo_run_trains_then_opens_a_blind_campaign_over_direct_and_ssae(world, alice, bob, carol):
    job = demo_training_start(
        model=world["lm"], general=world["general"], domain=world["domain"], created_by=alice, overrides=SMALL
    )
    assert demo_training_start(model=world["lm"], general=world["general"], domain=world["domain"]) == job
    assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error
    job.refresh_from_db()
    methods = sorted(SAE.objects.filter(job=job, status=SAE.Status.READY).values_list("method", flat=True))
    assert methods == ["direct", "gsae", "ssae"]

    campaign = demo_campaign_open(
        job=job, general=world["general"], domain=world["domain"], labeller_ids=[bob.pk, carol.pk],
        created_by=alice, n_features=5, dashboard_tokens=1024,
    )  # fmt: skip
    assert campaign.status == Campaign.Status.PREPARING
    builds = list(campaign.build_jobs.all())
    assert len(builds) == 4 and all(b.params["max_tokens"] == 1024 for b in builds)
    for build in builds:
        assert job_run(job_id=build.pk, attempt=build.attempt) == JobStatus.SUCCEEDED
    # the builds' successes queued the job that opens the campaign (a worker runs it in the demo)
    (opener,) = campaign.build_jobs.filter(kind=OPEN_JOB_KIND)
    assert job_run(job_id=opener.pk, attempt=opener.attempt) == JobStatus.SUCCEEDED
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.OPEN
    assert set(campaign.labellers.values_list("username", flat=True)) == {"bob", "carol"}
    sources = Item.objects.filter(campaign=campaign).values_list("source__sae__method", flat=True)
    assert sorted(sources) == ["direct"] * 5 + ["ssae"] * 5
    # Asking again changes nothing.
    again = demo_campaign_open(job=job, general=world["general"], domain=world["domain"], labeller_ids=[])
    assert again == campaign and Campaign.objects.filter(name=DEMO_CAMPAIGN).count() == 1


def test_demo_campaign_needs_a_successful_training_job(world, alice):
    job = demo_training_start(model=world["lm"], general=world["general"], domain=world["domain"], overrides=SMALL)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    job.refresh_from_db()
    with pytest.raises(LabelError, match="not succeeded"):
        demo_campaign_open(job=job, general=world["general"], domain=world["domain"], labeller_ids=[])
    # A failed run is not reused: the next start queues a fresh one.
    assert demo_training_start(model=world["lm"], general=world["general"], domain=world["domain"]) != job
