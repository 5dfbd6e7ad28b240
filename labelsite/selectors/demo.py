"""Where the demo study stands: what `make demo` made under a name prefix, and whether it is ready to use.

`demo_status` is what `python manage.py demo_status` prints and what CI asserts after `make demo`: the study
evaluated with its three figures drawn, the campaign open, and dashboards for every campaign source on both of
its corpora.
"""

from __future__ import annotations

from typing import Any

from compute.models import Job, JobKind, JobStatus, Study
from compute.selectors.dashboards import dashboards_ready
from labelsite.models import Campaign

FAILED = (JobStatus.FAILED, JobStatus.CANCELLED)


def demo_training_job(prefix: str) -> Job | None:
    """The demo's training run under `prefix`: the first one that did not fail."""
    return (
        Job.objects.filter(kind=JobKind.TRAIN_SAES, params__name_prefix=prefix)
        .exclude(status__in=FAILED)
        .order_by("pk")
        .first()
    )


def demo_study(prefix: str) -> Study | None:
    job = demo_training_job(prefix)
    return Study.objects.filter(training_job=job).first() if job else None


def demo_status(*, prefix: str, campaign_name: str) -> dict[str, Any]:
    """The study and the campaign as a JSON-able dict; `ready` when both can be used."""
    from compute.services.study_figures import study_figure, study_figures_of
    from config.figures import svg_text

    study = demo_study(prefix)
    evaluation = study.evaluations.order_by("-created_at", "-pk").first() if study else None
    figures = {}
    if evaluation is not None:
        for name in study_figures_of(evaluation):
            try:
                figures[name] = "<svg" in svg_text(study_figure(evaluation, name))
            except Exception as exc:  # noqa: BLE001 - reported as what it is, not raised
                figures[name] = f"{type(exc).__name__}: {exc}"
    campaign = Campaign.objects.filter(name=campaign_name).first()
    sources = []
    if campaign is not None:
        corpora = {"domain": campaign.domain_corpus_id, "general": campaign.general_corpus_id}
        for source in campaign.sources.select_related("sae"):
            ready = {key: dashboards_ready(sae_id=source.sae_id, corpus_id=c) for key, c in corpora.items()}
            sources.append({"sae": source.sae.name, "dashboards": ready})
    status = {
        "study": {
            "id": study.pk if study else None,
            "evaluated": evaluation is not None,
            "figures": figures,
        },
        "campaign": {
            "id": campaign.pk if campaign else None,
            "status": campaign.status if campaign else None,
            "items": campaign.items.count() if campaign else 0,
            "sources": sources,
        },
    }
    status["ready"] = bool(
        evaluation is not None
        and figures
        and all(v is True for v in figures.values())
        and campaign is not None
        and campaign.status == Campaign.Status.OPEN
        and sources
        and all(all(s["dashboards"].values()) for s in sources)
    )
    return status
