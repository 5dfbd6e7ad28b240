from __future__ import annotations

from django.apps import AppConfig


class LabelsiteConfig(AppConfig):
    name = "labelsite"
    verbose_name = "Labelling"

    def ready(self) -> None:
        from compute.jobs import DEFAULT_QUEUE, KindSpec, job_kind_register
        from labelsite import receivers  # noqa: F401 - reacts to compute's job_succeeded signal
        from labelsite.services.campaigns import OPEN_JOB_KIND

        job_kind_register(OPEN_JOB_KIND, KindSpec("labelsite.services.campaigns.run_campaign_open_job", DEFAULT_QUEUE))
