"""Admin-only compute pages: the overview and the job pages (HTMX polling)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compute.jobs import job_cancel, job_create, job_retry
from compute.models import SAE, Corpus, Job, JobKind, LanguageModel
from compute.models.jobs import FINISHED_STATUSES
from config.roles import admin_required


@admin_required
def index(request: HttpRequest) -> HttpResponse:
    jobs = list(Job.objects.all()[:10])
    context = {
        "models": LanguageModel.objects.all(),
        "corpora": Corpus.objects.all(),
        "saes": SAE.objects.select_related("language_model", "train_corpus")[:200],
        "jobs": jobs,
        "active_jobs": any(job.status not in FINISHED_STATUSES for job in jobs),
    }
    return render(request, "compute/index.html", context)


@admin_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.select_related("created_by")[:200]
    return render(request, "compute/job_list.html", {"jobs": jobs})


@admin_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    template = "compute/job_detail.html#job-panel" if request.htmx else "compute/job_detail.html"
    return render(request, template, _job_context(job))


@admin_required
@require_POST
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    if job_cancel(job_id=job.pk):
        messages.success(request, f"Job {job.pk} cancelled.")
    else:
        messages.error(request, f"Job {job.pk} is {job.status}; only queued or running jobs can be cancelled.")
    return _back_to_job(request, job.pk)


@admin_required
@require_POST
def job_retry_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    if job_retry(job_id=job.pk):
        messages.success(request, f"Job {job.pk} queued again.")
    else:
        messages.error(request, f"Job {job.pk} is {job.status}; only failed, cancelled or lost jobs can be retried.")
    return _back_to_job(request, job.pk)


@admin_required
@require_POST
def selfcheck_start(request: HttpRequest) -> HttpResponse:
    job = job_create(kind=JobKind.SELFCHECK, params={"steps": 5, "delay_s": 0.5}, created_by=request.user)
    return redirect("compute:job-detail", job_id=job.pk)


def _back_to_job(request: HttpRequest, job_id: int) -> HttpResponse:
    if request.htmx:
        job = Job.objects.get(pk=job_id)
        return render(request, "compute/job_detail.html#job-panel", _job_context(job))
    return redirect("compute:job-detail", job_id=job_id)


def _job_context(job: Job) -> dict:
    """The job, its live figures in a readable order, and its training curve while it runs (or ran)."""
    stats = {k: v for k, v in (job.stats or {}).items() if k != "curves"}
    context = {"job": job, "stats": stats}
    if job.is_finished:
        context["trained"] = [(sae, sae.health()) for sae in job.saes.filter(status=SAE.Status.READY).order_by("pk")]
    curves = (job.stats or {}).get("curves")
    if curves:
        from compute.services.training_figures import training_curve_figure
        from config.figures import svg_text

        title = "Training so far (minibatch figures)" if not job.is_finished else "Training (minibatch figures)"
        context["curve_svg"] = svg_text(training_curve_figure(curves, title=title))
    return context
