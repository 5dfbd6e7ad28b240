"""Dashboard builds, the job entry: `dashboard_build` finds or queues the build of one SAE on one corpus.

Reads are in `compute.selectors.dashboards`, export formats in `compute.selectors.dashboard_exports`,
rendering in `compute.selectors.dashboard_html`, and the worker-side build in
`compute.services.dashboard_build`.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from compute.jobs import job_create
from compute.ml.config import DashboardJobConfig
from compute.models import SAE, Corpus, DashboardSet, Job, JobKind, JobStatus
from config.errors import Conflict

_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def dashboard_build(*, sae_id: int, corpus_id: int, created_by=None, params: dict[str, Any] | None = None) -> Job:
    """The build job for this SAE x corpus: the queued, running or succeeded one if any, else a new one."""
    with transaction.atomic():
        sae = SAE.objects.select_for_update().get(pk=sae_id)
        corpus = Corpus.objects.get(pk=corpus_id)
        dset, _ = DashboardSet.objects.get_or_create(sae=sae, corpus=corpus)
        dset = DashboardSet.objects.select_for_update().get(pk=dset.pk)
        job = dset.job
        if job is not None and (job.status in _ACTIVE or _ready(dset)):
            return job
        job = job_create(
            kind=JobKind.BUILD_DASHBOARDS,
            params={**(params or {}), "sae_id": sae.pk, "corpus_id": corpus.pk},
            created_by=created_by,
        )
        # Finished dashboards stay readable: their (lost) job record is replaced by one that reuses them.
        status = dset.status if _ready(dset) else DashboardSet.Status.BUILDING
        DashboardSet.objects.filter(pk=dset.pk).update(job=job, status=status)
    return job


def dashboards_build(*, sae: SAE, corpora: list[Corpus], config: DashboardJobConfig, created_by=None) -> list[Job]:
    """The build jobs of `sae` on each corpus with `config` (see `dashboard_build`); Conflict unless the SAE is ready."""
    if sae.status != SAE.Status.READY:
        raise Conflict(f"SAE {sae.name} is {sae.get_status_display().lower()}; dashboards need a ready SAE.")
    params = config.to_params()
    return [
        dashboard_build(sae_id=sae.pk, corpus_id=corpus.pk, created_by=created_by, params=params) for corpus in corpora
    ]


def _ready(dset: DashboardSet) -> bool:
    return dset.status == DashboardSet.Status.READY
