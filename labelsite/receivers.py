"""Reactions to compute events: a campaign waiting for its dashboards is opened (by a job) when the last
build succeeds."""

from __future__ import annotations

import logging

from django.dispatch import receiver

from compute.models import JobKind
from compute.signals import job_succeeded
from labelsite.models import Campaign

log = logging.getLogger(__name__)


@receiver(job_succeeded, dispatch_uid="labelsite.campaigns_advance_after_dashboards")
def campaigns_advance_after_dashboards(sender, job, **kwargs) -> None:
    if job.kind != JobKind.BUILD_DASHBOARDS:
        return
    from labelsite.services import LabelError
    from labelsite.services.campaigns import campaign_open_start

    waiting = Campaign.objects.filter(status=Campaign.Status.PREPARING, build_jobs=job).values_list("pk", flat=True)
    for campaign_id in waiting:
        try:
            campaign_open_start(campaign_id=campaign_id, user=job.created_by)
        except LabelError as exc:
            Campaign.objects.filter(pk=campaign_id).update(prepare_error=str(exc))
            log.warning("campaign %s could not open after job %s: %s", campaign_id, job.pk, exc)
