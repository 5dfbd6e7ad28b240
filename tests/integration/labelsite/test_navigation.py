"""What the overview pages say: the admin's home points to campaigns, jobs of every kind are named in words."""

from __future__ import annotations

from compute.jobs import job_create
from compute.models import Job
from labelsite.services.campaigns import OPEN_JOB_KIND


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
