from __future__ import annotations

from django.apps import AppConfig


class LabelsiteConfig(AppConfig):
    name = "labelsite"
    verbose_name = "Labelling"

    def ready(self) -> None:
        from compute.jobs import DEFAULT_QUEUE, GPU_QUEUE, KindSpec, job_kind_register
        from labelsite import receivers  # noqa: F401 - reacts to compute's job_succeeded signal
        from labelsite.services.campaigns import OPEN_JOB_KIND
        from labelsite.services.judge import JUDGE_JOB_KIND

        job_kind_register(
            OPEN_JOB_KIND,
            KindSpec(
                "labelsite.services.campaigns.run_campaign_open_job", DEFAULT_QUEUE, label="Open a labelling campaign"
            ),
        )
        # The judge may be the local instruct model, which wants the worker that has the accelerator.
        job_kind_register(
            JUDGE_JOB_KIND,
            KindSpec("labelsite.services.judge.run_campaign_judge_job", GPU_QUEUE, label="Judge a campaign's features"),
        )
