"""Admin feature browser: dashboard sets of an SAE, a sortable feature list, one feature's dashboards, exports."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe

from compute.forms import DashboardBuildForm
from compute.ml.config import DashboardJobConfig
from compute.models import SAE, Corpus, DashboardSet
from compute.selectors.dashboard_cost import dashboard_build_estimate
from compute.selectors.dashboard_exports import dashboard_export, dashboard_set_export_lines, neuronpedia_set_lines
from compute.selectors.dashboard_html import dashboard_html
from compute.selectors.dashboards import buildable_corpora, dashboard_get
from compute.services.dashboards import dashboards_build
from compute.services.neuronpedia import neuronpedia_feature
from config.errors import ServiceError
from config.roles import admin_required

SORTS = {"index": "feature_index", "frequency": "-frequency", "max": "-max_activation", "rare": "frequency"}
EXPORT_STYLES = ("ours", "neuronpedia")


@admin_required
def sae_dashboards(request: HttpRequest, sae_id: int) -> HttpResponse:
    sae = get_object_or_404(SAE.objects.select_related("language_model"), pk=sae_id)
    sets = {s.corpus_id: s for s in DashboardSet.objects.filter(sae=sae).select_related("job")}
    rows = [{"corpus": corpus, "set": sets.get(corpus.pk)} for corpus in Corpus.objects.all()]
    return render(request, "compute/dashboard_sets.html", {"sae": sae, "rows": rows})


@admin_required
def dashboard_build_view(request: HttpRequest, sae_id: int) -> HttpResponse:
    """The build form: corpora and settings, with the estimate of what the build will cost (live with htmx:
    the estimate partial alone); POST queues one job per corpus. Without JavaScript, "Update estimate" GETs it."""
    sae = get_object_or_404(SAE.objects.select_related("language_model"), pk=sae_id)
    corpora = buildable_corpora(sae=sae)
    # `?corpus=<id>` (the link from the sets page) only preselects; any other query is the form's own GET.
    data = request.POST if request.method == "POST" else (request.GET if set(request.GET) - {"corpus"} else None)
    preselected = [c for c in corpora if str(c.pk) == request.GET.get("corpus")] or corpora
    form = DashboardBuildForm(data, corpora=corpora, initial={"corpora": preselected})
    if request.method == "POST" and form.is_valid():
        chosen = list(form.cleaned_data["corpora"])
        try:
            jobs = dashboards_build(sae=sae, corpora=chosen, config=form.config, created_by=request.user)
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            for corpus, job in zip(chosen, jobs, strict=True):
                messages.success(request, f"Dashboards of {sae.name} on {corpus.name}: job {job.pk} ({job.status}).")
            if len(jobs) == 1:
                return redirect("compute:job-detail", job_id=jobs[0].pk)
            return redirect("compute:sae-dashboards", sae_id=sae.pk)
    estimate = None
    if corpora and (data is None or form.is_valid()):
        config = form.config if data is not None else DashboardJobConfig()
        chosen = list(form.cleaned_data["corpora"]) if data is not None else preselected
        estimate = dashboard_build_estimate(sae=sae, corpora=chosen, config=config)
    context = {"sae": sae, "form": form, "estimate": estimate, "corpora": corpora}
    template = "compute/dashboard_build.html#estimate" if request.htmx else "compute/dashboard_build.html"
    return render(request, template, context)


def _ready_set_or_404(sae_id: int, corpus_id: int) -> DashboardSet:
    dset = (
        DashboardSet.objects.select_related("sae", "corpus")
        .filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY)
        .first()
    )
    if dset is None:
        raise Http404("No finished dashboards for this SAE and corpus; build them first.")
    return dset


@admin_required
def feature_browser(request: HttpRequest, sae_id: int, corpus_id: int) -> HttpResponse:
    dset = _ready_set_or_404(sae_id, corpus_id)
    jump = request.GET.get("feature", "").strip()
    if jump:
        if jump.isdigit() and int(jump) < dset.n_features:
            return redirect("compute:feature-dashboard", sae_id=sae_id, corpus_id=corpus_id, feature_index=int(jump))
        messages.error(request, f"Feature must be a number from 0 to {dset.n_features - 1}.")
    sort = request.GET.get("sort", "index")
    order = SORTS.get(sort, "feature_index")
    features = dset.features.order_by(order, "feature_index").only(
        "feature_index", "n_firing", "frequency", "max_activation"
    )
    # Filters: dead features hidden unless asked for; a firing-frequency range (fractions of tokens).
    show_dead = request.GET.get("dead") == "1"
    if not show_dead:
        features = features.filter(n_firing__gt=0)
    bounds = {}
    for key, lookup in (("min_freq", "frequency__gte"), ("max_freq", "frequency__lte")):
        raw = request.GET.get(key, "").strip()
        if not raw:
            continue
        try:
            bounds[key] = float(raw)
        except ValueError:
            messages.error(request, f"{key.replace('_', ' ')}: give a number such as 0.001 (a fraction of tokens).")
            continue
        features = features.filter(**{lookup: bounds[key]})
    filters = {k: v for k, v in (("dead", "1" if show_dead else ""), *((k, request.GET[k]) for k in bounds)) if v}
    page = Paginator(features, 100).get_page(request.GET.get("page"))
    context = {
        "dset": dset,
        "page": page,
        "sort": sort,
        "sorts": list(SORTS),
        "show_dead": show_dead,
        "min_freq": request.GET.get("min_freq", ""),
        "max_freq": request.GET.get("max_freq", ""),
        "filter_query": urlencode(filters),
    }
    return render(request, "compute/dashboard_browser.html", context)


@admin_required
def feature_dashboard(request: HttpRequest, sae_id: int, corpus_id: int, feature_index: int) -> HttpResponse:
    """One feature on this corpus, and beside it on every other corpus with finished dashboards."""
    dset = _ready_set_or_404(sae_id, corpus_id)
    if feature_index >= dset.n_features:
        raise Http404(f"This SAE has features 0 to {dset.n_features - 1}.")
    others = DashboardSet.objects.filter(sae_id=sae_id, status=DashboardSet.Status.READY).exclude(pk=dset.pk)
    log = request.GET.get("log") == "1"
    panels = [
        {
            "corpus": s.corpus,
            "html": mark_safe(
                dashboard_html(sae_id=sae_id, corpus_id=s.corpus_id, feature_index=feature_index, blind=False)
            ),
            "histogram_svg": _histogram_svg(s, feature_index, log=log),
        }
        for s in [dset, *others.select_related("corpus")]
    ]
    context = {
        "log": log,
        "dset": dset,
        "feature_index": feature_index,
        "panels": panels,
        "prev": feature_index - 1 if feature_index > 0 else None,
        "next": feature_index + 1 if feature_index + 1 < dset.n_features else None,
    }
    return render(request, "compute/feature_dashboard.html", context)


@admin_required
def feature_export(request: HttpRequest, sae_id: int, corpus_id: int, feature_index: int) -> HttpResponse:
    style = request.GET.get("style", "ours")
    if style not in EXPORT_STYLES:
        return JsonResponse({"detail": f"style must be one of {', '.join(EXPORT_STYLES)}."}, status=400)
    found = dashboard_get(sae_id=sae_id, corpus_id=corpus_id, feature_index=feature_index)
    if found is None:
        return JsonResponse({"detail": "No finished dashboard for this SAE, corpus and feature."}, status=404)
    dset, row = found
    if style == "neuronpedia":
        return JsonResponse(neuronpedia_feature(dashboard_export(dset=dset, row=row)))
    return JsonResponse(dashboard_export(dset=dset, row=row))


@admin_required
def set_export(request: HttpRequest, sae_id: int, corpus_id: int) -> HttpResponse:
    style = request.GET.get("style", "ours")
    if style not in EXPORT_STYLES:
        return JsonResponse({"detail": f"style must be one of {', '.join(EXPORT_STYLES)}."}, status=400)
    dset = _ready_set_or_404(sae_id, corpus_id)
    if style == "neuronpedia":  # one batch document, as Neuronpedia imports it
        response = StreamingHttpResponse(neuronpedia_set_lines(dset=dset), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="neuronpedia-sae{sae_id}-corpus{corpus_id}.json"'
        return response
    response = StreamingHttpResponse(dashboard_set_export_lines(dset=dset), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="dashboards-sae{sae_id}-corpus{corpus_id}-{style}.jsonl"'
    return response


def _histogram_svg(dset: DashboardSet, feature_index: int, *, log: bool) -> str:
    """The feature's activation histogram on this set's corpus as an inline figure ("" when it never fires)."""
    from compute.services.dashboard_figures import activation_histogram_figure
    from config.figures import svg_text

    row = dset.features.filter(feature_index=feature_index).first()
    histogram = (row.data.get("histogram") or {}) if row is not None else {}
    if not any(histogram.get("counts") or []):
        return ""
    figure = activation_histogram_figure(histogram["counts"], histogram["hi"], log=log, corpus=dset.corpus.name)
    return mark_safe(svg_text(figure))
