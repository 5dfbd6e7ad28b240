"""Admin pages of decomposition probes: a feature's decompositions, one decomposition, the study-wide summary,
and the live probe on a feature's page."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from compute.forms import DecompositionEditForm, DecompositionProposeForm, ProbeForm
from compute.jobs import JobInputError
from compute.ml.decomposition import CLASS_LABELS, components_to_text
from compute.models import SAE, Corpus, Decomposition, FeatureDashboard
from compute.selectors.dashboard_html import tokens_html
from compute.services.decomposition import (
    decomposition_create_manual,
    decomposition_edit,
    decomposition_propose,
    decomposition_summary,
    decompositions_measure,
)
from compute.services.decomposition_figures import decomposition_figure, summary_figure
from compute.services.probe import probe_text
from config.figures import FORMATS, figure_response, svg_text
from config.roles import admin_required


@admin_required
def feature_decompositions(request: HttpRequest, sae_id: int, corpus_id: int, feature_index: int) -> HttpResponse:
    sae = get_object_or_404(SAE, pk=sae_id)
    corpus = get_object_or_404(Corpus, pk=corpus_id)
    form = DecompositionProposeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["source"] == "manual":
                decomposition = decomposition_create_manual(
                    sae=sae, corpus=corpus, feature_index=feature_index, description=data["description"],
                    components_text=data["components_text"], created_by=request.user,
                )  # fmt: skip
            else:
                decomposition = decomposition_propose(
                    sae=sae, corpus=corpus, feature_index=feature_index, description=data["description"],
                    source=data["source"], n_components=data["n_components"], n_phrases=data["n_phrases"],
                    created_by=request.user,
                )  # fmt: skip
        except JobInputError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("compute:decomposition-detail", decomposition_id=decomposition.pk)
    rows = Decomposition.objects.filter(sae=sae, feature_index=feature_index).select_related("corpus")
    context = {"sae": sae, "corpus": corpus, "feature_index": feature_index, "form": form, "rows": rows}
    return render(request, "compute/feature_decompositions.html", context, status=400 if form.errors else 200)


@admin_required
def decomposition_detail(request: HttpRequest, decomposition_id: int) -> HttpResponse:
    decomposition = get_object_or_404(Decomposition.objects.select_related("sae", "corpus", "job"), pk=decomposition_id)
    form = DecompositionEditForm(
        request.POST or None, initial={"components_text": components_to_text(decomposition.components)}
    )
    if request.method == "POST" and form.is_valid():
        try:
            decomposition_edit(decomposition=decomposition, components_text=form.cleaned_data["components_text"])
        except JobInputError as exc:
            form.add_error("components_text", str(exc))
        else:
            messages.success(request, "Sub-components saved; measure them again to see the new activations.")
            return redirect("compute:decomposition-detail", decomposition_id=decomposition.pk)
    m = decomposition.measurement
    chart = mark_safe(svg_text(decomposition_figure(decomposition))) if m else ""
    table = []
    if m:
        scale = m["corpus_max"]
        verdict_rows = {row["name"]: row for row in m["verdict"]["components"]}
        for component in m["components"]:
            entries = [
                {**p, "kind": kind, "html": mark_safe(tokens_html(p["tokens"], p["values"], scale))}
                for kind, key in (("phrase", "phrases"), ("near miss", "near_misses"))
                for p in component[key]
            ]
            table.append({"name": component["name"], "verdict": verdict_rows[component["name"]], "entries": entries})
        general = [{**g, "html": mark_safe(tokens_html(g["tokens"], g["values"], scale))} for g in m["general"]]
    else:
        general = []
    context = {
        "d": decomposition,
        "form": form,
        "chart": chart,
        "table": table,
        "general": general,
        "verdict_label": CLASS_LABELS.get(decomposition.verdict, ""),
    }
    return render(request, "compute/decomposition_detail.html", context, status=400 if form.errors else 200)


@admin_required
@require_POST
def decomposition_measure_view(request: HttpRequest, decomposition_id: int) -> HttpResponse:
    decomposition = get_object_or_404(Decomposition, pk=decomposition_id)
    if decomposition.status == Decomposition.Status.MEASURING:
        messages.info(request, "Already being measured.")  # a double click queues nothing more
        return redirect("compute:decomposition-detail", decomposition_id=decomposition.pk)
    try:
        job = decompositions_measure(decompositions=[decomposition], created_by=request.user)
    except JobInputError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Measuring: job {job.pk}.")
    return redirect("compute:decomposition-detail", decomposition_id=decomposition.pk)


@admin_required
def decomposition_figure_download(request: HttpRequest, decomposition_id: int, fmt: str) -> HttpResponse:
    decomposition = get_object_or_404(Decomposition, pk=decomposition_id)
    if fmt not in FORMATS or not decomposition.measurement:
        raise Http404("No such figure.")
    name = f"decomposition-{decomposition.pk}-feature-{decomposition.feature_index}"
    return figure_response(decomposition_figure(decomposition), fmt=fmt, name=name)


@admin_required
def decomposition_list(request: HttpRequest) -> HttpResponse:
    """Study-wide: how many measured features fall in each class, per SAE; drafts can be measured in one job."""
    if request.method == "POST":
        drafts = list(Decomposition.objects.filter(status=Decomposition.Status.DRAFT).exclude(components=[]))
        if not drafts:
            messages.info(request, "No drafts to measure.")
        else:
            job = decompositions_measure(decompositions=drafts, created_by=request.user)
            messages.success(request, f"Measuring {len(drafts)} decompositions in one job: job {job.pk}.")
        return redirect("compute:decomposition-list")
    summary = decomposition_summary()
    fmt = request.GET.get("download")
    if summary and fmt in FORMATS:
        return figure_response(summary_figure(summary), fmt=fmt, name="decomposition-summary")
    context = {
        "summary": summary,
        "chart": mark_safe(svg_text(summary_figure(summary))) if summary else "",
        "rows": Decomposition.objects.select_related("sae", "corpus")[:200],
        "n_drafts": Decomposition.objects.filter(status=Decomposition.Status.DRAFT).count(),
        "class_labels": CLASS_LABELS,
    }
    return render(request, "compute/decomposition_list.html", context)


@admin_required
@require_POST
def feature_probe(request: HttpRequest, sae_id: int, corpus_id: int, feature_index: int) -> HttpResponse:
    """The live probe's answer as a fragment (htmx swaps it in; without JavaScript it is the whole response)."""
    sae = get_object_or_404(SAE, pk=sae_id)
    form = ProbeForm(request.POST)
    if not form.is_valid():
        return render(request, "compute/_probe_result.html", {"error": form.errors["text"][0]}, status=400)
    row = FeatureDashboard.objects.filter(
        dashboard_set__sae_id=sae_id, dashboard_set__corpus_id=corpus_id, feature_index=feature_index
    ).only("max_activation").first()  # fmt: skip
    try:
        result = probe_text(
            sae=sae, feature_index=feature_index, text=form.cleaned_data["text"], created_by=request.user
        )
    except JobInputError as exc:
        return render(request, "compute/_probe_result.html", {"error": str(exc)}, status=400)
    scale = row.max_activation if row and row.max_activation > 0 else max(result["max"], 1e-9)
    context = {
        "result": result,
        "scale": scale,
        "relative": result["max"] / row.max_activation if row and row.max_activation > 0 else None,
        "html": mark_safe(tokens_html(result["tokens"], result["values"], scale)),
        "values": list(zip(result["tokens"], result["values"], strict=True)),
    }
    return render(request, "compute/_probe_result.html", context)
