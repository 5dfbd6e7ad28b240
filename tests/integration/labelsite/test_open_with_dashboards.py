"""Opening a campaign for real: missing dashboards become build jobs (the campaign waits in 'preparing'),
then items are sampled (dead features skipped by firing frequency) and their blind panels cached."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from compute.jobs import job_run
from compute.models import SAE, Corpus, Job, JobStatus
from compute.selectors.dashboards import feature_frequencies
from labelsite.models import Campaign, Item
from labelsite.services.campaigns import (
    OPEN_JOB_KIND,
    SourceSpec,
    campaign_create,
    campaign_open,
    campaign_open_start,
    items_render_panels,
    items_sample,
)
from tests.factories import random_sae, tiny_language_model
from tests.integration.labelsite.test_blinding_crawl import _assert_blind, _crawl, _forbidden_patterns

pytestmark = pytest.mark.django_db

HOOK = "blocks.1.hook_resid_post"
D_SAE = 24
DEAD = (3, 5, 8, 13, 21)
DOMAIN = ["Let x be a prime. Then x divides ab implies x divides a or b.", "The integral of 2x dx is x^2 + C."] * 15
WRITES = ("INSERT", "UPDATE", "DELETE")
GENERAL = ["Stocks fell on Monday as investors weighed the news.", "Rain is expected in the north tonight."] * 15


@pytest.fixture
def world(tmp_path, artifacts):
    lm = tiny_language_model(tmp_path / "lm", hook=HOOK)
    saes = [
        random_sae(artifacts, lm=lm, name=name, method=method, d_sae=D_SAE, dead=DEAD)
        for name, method in (("qxv-direct-math", "direct"), ("qxv-specialised-math", "ssae"))
    ]
    (tmp_path / "d.txt").write_text("\n\n".join(DOMAIN))
    (tmp_path / "g.txt").write_text("\n\n".join(GENERAL))
    domain = Corpus.objects.create(name="math-notes", kind="domain", source="files", location=str(tmp_path / "d.txt"))
    general = Corpus.objects.create(name="news", kind="general", source="files", location=str(tmp_path / "g.txt"))
    return {"lm": lm, "saes": saes, "domain": domain, "general": general}


def real_campaign(world, labeller, *, name: str = "Real dashboards", **options) -> Campaign:
    """A draft campaign of 6 live features per SAE of `world`, for `labeller`."""
    return campaign_create(
        name=name,
        domain_corpus_id=world["domain"].pk,
        general_corpus_id=world["general"].pk,
        sources=[SourceSpec(sae_id=s.pk, n_features=6) for s in world["saes"]],
        labeller_ids=[labeller.pk],
        min_frequency=1e-6,
        seed=5,
        **options,
    )


def test_campaign_prepares_dashboards_then_opens_with_blind_panels(world, alice, bob, client):
    campaign = real_campaign(world, bob)
    campaign = campaign_open(campaign_id=campaign.pk, user=alice)
    assert campaign.status == Campaign.Status.PREPARING
    jobs = list(campaign.build_jobs.all())
    assert len(jobs) == 4  # 2 SAEs x (domain, general)
    assert campaign_open(campaign_id=campaign.pk).build_jobs.count() == 4  # asking again reuses the jobs
    assert not Item.objects.filter(campaign=campaign).exists()
    for job in jobs[:-1]:
        assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, job.error
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PREPARING
    # each build's success asks for the campaign to open: one queued open job, reused
    assert job_run(job_id=jobs[-1].pk, attempt=jobs[-1].attempt) == JobStatus.SUCCEEDED
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PREPARING
    (opener,) = campaign.build_jobs.filter(kind=OPEN_JOB_KIND)
    # a GET of the admin page only reads, even with everything ready to open
    client.force_login(alice)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse("manage:campaign", args=[campaign.pk])).status_code == 200
    assert not [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]
    # the open job, with nobody watching, opens it
    assert job_run(job_id=opener.pk, attempt=opener.attempt) == JobStatus.SUCCEEDED, Job.objects.get(pk=opener.pk).error
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.OPEN
    client.force_login(alice)
    assert client.get(reverse("manage:campaign", args=[campaign.pk])).status_code == 200

    items = list(Item.objects.filter(campaign=campaign).select_related("source"))
    assert len(items) == 12
    for sae in world["saes"]:
        freqs = feature_frequencies(sae_id=sae.pk, corpus_id=world["domain"].pk)
        chosen = [i.feature_index for i in items if i.source.sae_id == sae.pk]
        assert len(chosen) == 6
        assert all(freqs[f] >= 1e-6 for f in chosen)
        assert not set(chosen) & set(DEAD)
    for item in items:
        assert 'class="dash blind-panel"' in item.domain_html and 'class="dash blind-panel"' in item.general_html
        assert "qxv-" not in item.domain_html + item.general_html
        assert "\x00" not in item.domain_html + item.general_html  # PostgreSQL text cannot hold NUL

    # a labeller labels two items, then everything they can fetch is crawled for identifiers
    client.force_login(bob)
    for _ in range(2):
        url = client.post(reverse("label:next", args=[campaign.pk]))["Location"]
        page = client.get(url).content.decode()
        assert page.count('class="dash blind-panel"') == 2
        client.post(url, {"domain_score": "2", "general_score": "1"})
    codes = list(Item.objects.filter(campaign=campaign, assignments__labeller=bob).values_list("code", flat=True))
    fetched = _crawl(client, ["/label/", "/api/label/campaigns/"] + [f"/label/i/{c}/" for c in codes])
    registry = type("R", (), {"saes": world["saes"], "lm": world["lm"]})
    assert _assert_blind(fetched, _forbidden_patterns(campaign, registry)) > 5


def test_a_failed_build_is_reported_on_the_campaign(world, alice):
    SAE.objects.filter(pk=world["saes"][0].pk).update(artifact_path="saes/nowhere")
    campaign = campaign_create(
        name="Broken",
        domain_corpus_id=world["domain"].pk,
        general_corpus_id=world["general"].pk,
        sources=[SourceSpec(sae_id=world["saes"][0].pk, n_features=4)],
        labeller_ids=[],
    )
    campaign = campaign_open(campaign_id=campaign.pk, user=alice)
    for job in campaign.build_jobs.all():
        job_run(job_id=job.pk, attempt=job.attempt)
    campaign = campaign_open(campaign_id=campaign.pk, user=alice)
    assert campaign.status == Campaign.Status.PREPARING
    assert not Item.objects.filter(campaign=campaign).exists()


def test_opening_is_a_job_and_panels_are_read_in_bulk(world, alice, bob, admin_client):
    def create(name: str, n: int):
        return campaign_create(
            name=name, domain_corpus_id=world["domain"].pk, general_corpus_id=world["general"].pk,
            sources=[SourceSpec(sae_id=s.pk, n_features=n) for s in world["saes"]], labeller_ids=[bob.pk],
        )  # fmt: skip

    # the admin's button only queues a job; a double click finds the same job
    small = create("small", 2)
    for _ in range(2):
        response = admin_client.post(reverse("manage:campaign-open", args=[small.pk]))
        assert response.status_code == 302
    (opener,) = small.build_jobs.filter(kind=OPEN_JOB_KIND)
    assert Campaign.objects.get(pk=small.pk).status == Campaign.Status.PREPARING
    assert not small.build_jobs.exclude(kind=OPEN_JOB_KIND).exists()  # nothing built in the request
    assert job_run(job_id=opener.pk, attempt=opener.attempt) == JobStatus.SUCCEEDED
    for job in small.build_jobs.exclude(kind=OPEN_JOB_KIND):
        assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, job.error
    assert Campaign.objects.get(pk=small.pk).status == Campaign.Status.PREPARING
    later = small.build_jobs.filter(kind=OPEN_JOB_KIND, status=JobStatus.QUEUED).get()
    assert job_run(job_id=later.pk, attempt=later.attempt) == JobStatus.SUCCEEDED
    assert Campaign.objects.get(pk=small.pk).status == Campaign.Status.OPEN
    assert campaign_open_start(campaign_id=small.pk) is None  # already open: nothing to do

    # rendering: the same number of queries for 2 and for 9 features per SAE (2 SAEs x 2 corpora)
    counts = {}
    for n in (2, 9):
        campaign = create(f"size {n}", n)
        items_sample(campaign=campaign)
        with CaptureQueriesContext(connection) as queries:
            assert items_render_panels(campaign=campaign) == 2 * 2 * n
        reads = [q["sql"] for q in queries if "compute_featuredashboard" in q["sql"]]
        counts[n] = (len(queries), len(reads))
        assert all(i.domain_html and i.general_html for i in Item.objects.filter(campaign=campaign))
    assert counts[2] == counts[9]
    # one read of dashboard rows per SAE and corpus, and one more for the contexts that complete short panels
    assert counts[9][1] == 4 + 4
