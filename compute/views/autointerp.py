"""Admin page for automated interpretability: start explain-and-score jobs, compare with human explanations, export."""

from __future__ import annotations

import csv
import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compute.forms import AutoInterpForm
from compute.jobs import JobInputError
from compute.models import SAE, Explanation, Job, JobKind, Study
from compute.selectors.autointerp import EXPORT_FIELDS, autointerp_comparison
from compute.services.autointerp import autointerp_start
from config.roles import admin_required


def _all_comparison(request: HttpRequest) -> dict:
    ids = request.GET.getlist("sae")
    sae_ids = [int(i) for i in ids if i.isdigit()] or list(
        Explanation.objects.values_list("feature__dashboard_set__sae_id", flat=True).distinct()
    )
    return autointerp_comparison(sae_ids=sae_ids)


@admin_required
def autointerp_page(request: HttpRequest) -> HttpResponse:
    form = AutoInterpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = autointerp_start(
                sae_id=data["sae"].pk,
                corpus_id=data["corpus"].pk,
                feature_indices=data["feature_indices"],
                n_random=data["n_random"],
                seed=data["seed"],
                created_by=request.user,
            )
        except JobInputError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request, f"Explaining and scoring {len(job.params['feature_indices'])} features: job {job.pk}."
            )
            return redirect("compute:job-detail", job_id=job.pk)
    context = {
        "form": form,
        "comparison": _all_comparison(request),
        "jobs": Job.objects.filter(kind=JobKind.AUTOINTERP).order_by("-created_at")[:20],
        "saes": SAE.objects.order_by("name"),
    }
    return render(request, "compute/autointerp.html", context)


def comparison_download(comparison: dict, *, fmt: str, filename: str) -> HttpResponse:
    """The comparison as CSV (one row per feature and corpus) or JSON (sources and features)."""
    if fmt == "json":
        response = HttpResponse(json.dumps(comparison, indent=2, default=str), content_type="application/json")
    else:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        writer = csv.DictWriter(response, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for row in comparison["features"]:
            writer.writerow({k: _csv_safe(v) for k, v in row.items()})
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response


def _csv_safe(value):
    """Free text must not run as a spreadsheet formula when the CSV is opened."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@admin_required
def autointerp_export(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in ("csv", "json"):
        raise Http404("Exports are .csv or .json.")
    return comparison_download(_all_comparison(request), fmt=fmt, filename="autointerp-comparison")


@admin_required
@require_POST
def study_autointerp(request: HttpRequest, study_id: int) -> HttpResponse:
    from compute.services.autointerp import study_autointerp_start

    study = get_object_or_404(Study, pk=study_id)
    raw = request.POST.get("n_random", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        messages.error(request, "Random features per SAE: a whole number from 1 to 100000.")
        return redirect("compute:study-detail", study_id=study.pk)
    try:
        jobs = study_autointerp_start(study_id=study.pk, n_random=int(raw), created_by=request.user)
    except JobInputError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Explaining and scoring: {len(jobs)} job(s).")
    return redirect("compute:study-detail", study_id=study.pk)
