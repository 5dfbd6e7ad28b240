"""Admin-only study pages: the list (and the form that creates a study), a study's figures, table and
downloads, its evaluation job, and creating a study from a training run in one click."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compute.forms import StudyForm
from compute.jobs import JobInputError
from compute.models import Job, JobKind, JobStatus, Study, StudyEvaluation
from compute.selectors.studies import evaluation_csv, evaluation_export, evaluation_table, representatives
from compute.services.studies import study_create, study_create_from_job, study_evaluate_start, study_fingerprint
from config.figures import figure_response, svg_text
from config.roles import admin_required


@admin_required
def study_list(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            study = study_create(**form.service_kwargs(), created_by=request.user)
        except JobInputError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("compute:study-detail", study_id=study.pk)
    studies = Study.objects.select_related("gsae", "domain_corpus", "general_corpus")[:200]
    status = 400 if request.method == "POST" else 200
    return render(request, "compute/study_list.html", {"studies": studies, "form": form}, status=status)


@admin_required
def study_detail(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study.objects.select_related("gsae", "domain_corpus", "general_corpus"), pk=study_id)
    fingerprint, _ = study_fingerprint(study)
    evaluation = study.evaluations.filter(fingerprint=fingerprint).first()
    stale = False
    if evaluation is None:
        evaluation = study.evaluations.first()
        stale = evaluation is not None
    running = Job.objects.filter(
        kind=JobKind.EVALUATE_STUDY, status__in=[JobStatus.QUEUED, JobStatus.RUNNING], params__study_id=study.pk
    ).first()
    context = {
        "study": study,
        "saes": study.saes.order_by("method", "pk"),
        "evaluation": evaluation,
        "stale": stale,
        "running": running,
    }
    if evaluation is not None:
        from compute.services.study_figures import study_figures_of

        picks = _picks(request)
        figures = study_figures_of(evaluation)
        context["figures"] = [(name, title, _figure_svg(evaluation, name, picks)) for name, title in figures.items()]
        context["headings"], context["rows"] = evaluation_table(evaluation)
        context["picks_query"] = request.GET.urlencode()
        context["pick_choices"] = _pick_choices(evaluation, picks)
    return render(request, "compute/study_detail.html", context)


def _figure_svg(evaluation: StudyEvaluation, name: str, picks: tuple[int, ...] = ()) -> str:
    """Figures of a stored evaluation never change: render each once (per choice of sweep points)."""
    from compute.services.study_figures import study_figure

    key = f"study-figure:{evaluation.pk}:{evaluation.fingerprint}:{name}:{','.join(map(str, picks))}"
    svg = cache.get(key)
    if svg is None:
        svg = svg_text(study_figure(evaluation, name, picks=picks))
        cache.set(key, svg, 24 * 3600)
    return svg


def _picks(request: HttpRequest) -> tuple[int, ...]:
    """The sweep points (SAE ids, `?show=`) the researcher chose for the histograms; other values are ignored."""
    return tuple(sorted({int(v) for v in request.GET.getlist("show") if v.isdigit()}))


def _pick_choices(evaluation: StudyEvaluation, picks: tuple[int, ...]) -> list[dict]:
    """Per domain method, its sweep points and the one the histograms show."""
    rows = evaluation.results.get("rows", [])
    shown = {row["method"]: row["sae_id"] for row in representatives(rows, include_gsae=False, picks=picks)}
    return [
        {
            "method": method,
            "shown": shown.get(method),
            "rows": [r for r in rows if r["method"] == method],
        }
        for method in ("finetune", "direct", "ssae")
        if any(r["method"] == method for r in rows)
    ]


@admin_required
@require_POST
def study_evaluate(request: HttpRequest, study_id: int) -> HttpResponse:
    study = get_object_or_404(Study, pk=study_id)
    try:
        outcome = study_evaluate_start(study=study, created_by=request.user)
    except JobInputError as exc:
        messages.error(request, str(exc))
        return redirect("compute:study-detail", study_id=study.pk)
    if outcome.reused:
        messages.info(request, "Nothing changed since the last evaluation: its numbers are shown.")
        return redirect("compute:study-detail", study_id=study.pk)
    return redirect("compute:job-detail", job_id=outcome.job.pk)


@admin_required
@require_POST
def study_from_job(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=job_id)
    try:
        study = study_create_from_job(job=job, created_by=request.user)
    except JobInputError as exc:
        messages.error(request, str(exc))
        return redirect("compute:job-detail", job_id=job.pk)
    return redirect("compute:study-detail", study_id=study.pk)


def _evaluation(study_id: int, evaluation_id: int) -> StudyEvaluation:
    return get_object_or_404(StudyEvaluation.objects.select_related("study"), pk=evaluation_id, study_id=study_id)


@admin_required
def study_figure_download(request: HttpRequest, study_id: int, evaluation_id: int, name: str, fmt: str):
    from compute.services.study_figures import study_figure, study_figures_of

    evaluation = _evaluation(study_id, evaluation_id)
    if name not in study_figures_of(evaluation) or fmt not in ("svg", "png"):
        raise Http404("No such figure.")
    figure = study_figure(evaluation, name, picks=_picks(request))
    return figure_response(figure, fmt=fmt, name=f"{evaluation.study.name}-{name}")


@admin_required
def study_export(request: HttpRequest, study_id: int, evaluation_id: int, fmt: str) -> HttpResponse:
    evaluation = _evaluation(study_id, evaluation_id)
    filename = f"{evaluation.study.name}-evaluation-{evaluation.pk}"
    if fmt == "csv":
        response = HttpResponse(evaluation_csv(evaluation), content_type="text/csv; charset=utf-8")
    elif fmt == "json":
        per_feature = request.GET.get("per_feature") == "1"
        data = evaluation_export(evaluation, per_feature=per_feature)
        response = HttpResponse(json.dumps(data, indent=1), content_type="application/json")
        if per_feature:
            filename += "-per-feature"
    else:
        raise Http404("Use csv or json.")
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response
