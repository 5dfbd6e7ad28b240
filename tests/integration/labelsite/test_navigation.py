"""What the overview pages say: the admin's home points to campaigns, jobs of every kind are named in words."""

from __future__ import annotations

from django.urls import reverse

from compute.jobs import job_create
from compute.models import Job, Study
from labelsite.services.campaigns import OPEN_JOB_KIND
from tests.integration.labelsite.factories import campaign_draft, registry_create


def test_the_home_page_speaks_to_admins_and_labellers_differently(client, alice, bob):
    client.force_login(alice)
    admin_home = client.get("/").content.decode()
    assert "An admin adds you" not in admin_home and "Create a campaign" in admin_home
    client.force_login(bob)
    labeller_home = client.get("/").content.decode()
    assert "An admin adds you to a campaign" in labeller_home and "Create a campaign" not in labeller_home


def test_a_job_kind_registered_by_another_app_is_named_in_words(admin_client, db):
    job = job_create(kind=OPEN_JOB_KIND, params={"campaign_id": 1}, enqueue=False)
    assert Job.objects.get(pk=job.pk).kind_label == "Open a labelling campaign"
    for url in ("/compute/jobs/", f"/compute/jobs/{job.pk}/"):
        page = admin_client.get(url).content.decode()
        assert "Open a labelling campaign" in page
        assert "<td>open_campaign</td>" not in page and ": open_campaign</h1>" not in page


def test_an_sae_page_links_the_studies_that_hold_it(admin_client, db):
    registry = registry_create()
    domain_sae, gsae = registry.saes
    study = Study.objects.create(
        name="math-study", gsae=gsae, domain_corpus=registry.domain, general_corpus=registry.general
    )
    study.saes.add(domain_sae)
    for sae, role in ((domain_sae, ""), (gsae, "as its GSAE; ")):
        page = admin_client.get(reverse("compute:sae-detail", args=[sae.pk])).content.decode()
        assert f'href="{reverse("compute:study-detail", args=[study.pk])}">math-study</a>' in page
        assert f"({role}0 evaluations)" in page
        assert "No evaluation of its own" in page and "None yet." not in page.split('id="evaluations"')[1][:2000]


def test_a_campaign_page_links_the_studies_of_its_saes(admin_client, bob, db):
    registry = registry_create()
    campaign = campaign_draft(registry=registry, labellers=[bob])
    page = admin_client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert "none of its SAEs is in a study" in page
    study = Study.objects.create(
        name="math-study", gsae=registry.saes[1], domain_corpus=registry.domain, general_corpus=registry.general
    )
    study.saes.add(registry.saes[0])
    page = admin_client.get(reverse("manage:campaign", args=[campaign.pk])).content.decode()
    assert page.count(f'href="{reverse("compute:study-detail", args=[study.pk])}">math-study</a>') == 1
