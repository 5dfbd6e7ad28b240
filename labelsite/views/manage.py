"""Admin campaign pages under /manage/ (the settings' STAFF_ONLY_PATH_PREFIXES also guard this prefix)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from config.figures import svg_text
from config.roles import admin_required
from labelsite.forms import CampaignForm, PlannerForm, ReassignForm
from labelsite.models import Campaign
from labelsite.selectors.admin import campaign_items, campaign_progress, campaign_studies
from labelsite.selectors.result_figures import FIGURES
from labelsite.selectors.results import agreement_matrix, campaign_results
from labelsite.services import LabelError
from labelsite.services.audit import stored_audit
from labelsite.services.campaigns import (
    SourceSpec,
    campaign_audit_run,
    campaign_close,
    campaign_create,
    campaign_open_start,
    campaign_reassign,
    campaign_reopen,
)


@admin_required
def campaign_list(request: HttpRequest) -> HttpResponse:
    campaigns = Campaign.objects.prefetch_related("sources__sae", "labellers")
    return render(request, "labelsite/manage/campaign_list.html", {"campaigns": campaigns})


@admin_required
@require_POST
def guidelines_preview(request: HttpRequest) -> HttpResponse:
    """The guidelines as labellers will see them (markdown rendered and sanitised), for the campaign form."""
    from labelsite.selectors.blind import guidelines_render

    text = request.POST.get("guidelines", "")[:50_000]
    html = guidelines_render(text) if text.strip() else '<p class="muted">No guidelines yet.</p>'
    return HttpResponse(f'<div id="guidelines-preview" class="card guidelines-preview">{html}</div>')


@admin_required
def campaign_new(request: HttpRequest) -> HttpResponse:
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            campaign = campaign_create(
                name=data["name"],
                guidelines=data["guidelines"],
                rubric=data["rubric"],
                questions=form.campaign_questions(),
                sources=[SourceSpec(sae_id=sae.pk, n_features=data["features_per_sae"]) for sae in data["saes"]],
                domain_corpus_id=data["domain_corpus"].pk,
                general_corpus_id=data["general_corpus"].pk,
                min_frequency=data["min_frequency"],
                seed=data["seed"],
                panel_order=data["panel_order"],
                labeller_ids=[u.pk for u in data["labellers"]],
                overlap=data["overlap"],
                hide_mapping_until_closed=data["hide_mapping_until_closed"],
                lease_seconds=data["lease_minutes"] * 60,
                max_skips=data["max_skips"],
                sampling=data["sampling"] or Campaign.Sampling.RANDOM,
                match_general=data["match_general"],
                ask_source_guess=data["ask_source_guess"],
                panel_extras=data["panel_extras"],
                repeat_share=(data["repeat_percent"] or 0) / 100,
                judge_only_features=data["judge_only_features"] or 0,
                gold=data["gold"],
                created_by=request.user,
            )
        except LabelError as exc:
            form.add_error(None, str(exc))
        else:
            if request.POST.get("then") != "open":
                messages.success(request, f'Campaign "{campaign.name}" created. Open it when you are ready.')
                return redirect("manage:campaign", campaign_id=campaign.pk)
            try:  # "Create and open": the same as pressing Open on the new campaign's page
                job = campaign_open_start(campaign_id=campaign.pk, user=request.user, confirm_leak=False)
            except LabelError as exc:
                messages.error(request, f'Campaign "{campaign.name}" created, but not opened: {exc}')
            else:
                messages.success(
                    request,
                    f'Campaign "{campaign.name}" created and open.'
                    if job is None
                    else f'Campaign "{campaign.name}" created; opening (job {job.pk} builds what is missing).',
                )
            return redirect("manage:campaign", campaign_id=campaign.pk)
    planner = PlannerForm(prefix="plan")  # previewed by views.judge.campaign_plan_preview, never saved
    return render(request, "labelsite/manage/campaign_new.html", {"form": form, "planner": planner})


@admin_required
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    # A GET only reads: a preparing campaign is moved on by its jobs (and by `campaigns_advance_after_dashboards`).
    campaign = get_object_or_404(Campaign.objects.select_related("domain_corpus", "general_corpus"), pk=campaign_id)
    context = {
        "campaign": campaign,
        "sources": campaign.sources.select_related("sae"),
        "progress": campaign_progress(campaign=campaign),
        "items": campaign_items(campaign=campaign, limit=500),
        "build_jobs": campaign.build_jobs.all(),
        "reassign_form": ReassignForm(campaign=campaign),
        "audit": stored_audit(campaign),
        "studies": campaign_studies(campaign=campaign),
    }
    template = "labelsite/manage/campaign_detail.html"
    return render(request, f"{template}#status-panel" if request.htmx else template, context)


def _act(request: HttpRequest, campaign_id: int, action, done: str) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        campaign = action(campaign_id=campaign.pk)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done.format(status=campaign.get_status_display().lower()))
    return redirect("manage:campaign", campaign_id=campaign.pk)


@admin_required
@require_POST
def campaign_open_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    confirm = request.POST.get("confirm_leak") == "1"
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        job = campaign_open_start(campaign_id=campaign.pk, user=request.user, confirm_leak=confirm)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        if job is None:
            messages.success(request, "Campaign is open.")
        else:
            messages.success(
                request,
                f"Opening: job {job.pk} builds what is missing and runs the blinding audit; "
                "the campaign opens by itself (or comes back as a draft with the audit's verdict).",
            )
    return redirect("manage:campaign", campaign_id=campaign.pk)


@admin_required
@require_POST
def campaign_audit_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        result = campaign_audit_run(campaign_id=campaign.pk)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        (messages.warning if result.leak else messages.success)(request, result.summary())
    return redirect("manage:campaign", campaign_id=campaign.pk)


@admin_required
@require_POST
def campaign_close_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _act(request, campaign_id, campaign_close, "Campaign closed; labellers can no longer submit or revise.")


@admin_required
@require_POST
def campaign_reopen_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    return _act(request, campaign_id, campaign_reopen, "Campaign reopened.")


@admin_required
@require_POST
def campaign_reassign_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    form = ReassignForm(request.POST, campaign=campaign)
    if not form.is_valid():
        messages.error(request, "Choose a labeller of this campaign (and optionally someone to hand over to).")
        return redirect("manage:campaign", campaign_id=campaign.pk)
    old, new = form.cleaned_data["from_user"], form.cleaned_data["to_user"]
    try:
        released = campaign_reassign(campaign_id=campaign.pk, from_user_id=old.pk, to_user_id=new.pk if new else None)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        to = f" and handed over to {new.get_username()}" if new else ""
        messages.success(request, f"Released {released} held item(s) of {old.get_username()}{to}.")
    return redirect("manage:campaign", campaign_id=campaign.pk)


@admin_required
def campaign_results_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The campaign unblinded: scores per source with intervals, comparisons, labellers, agreement, charts."""
    campaign = get_object_or_404(Campaign.objects.select_related("domain_corpus", "general_corpus"), pk=campaign_id)
    try:
        results = campaign_results(campaign=campaign)
    except LabelError as exc:
        messages.error(request, str(exc))
        return redirect("manage:campaign", campaign_id=campaign.pk)
    figures = []
    for name, (title, build) in FIGURES.items():
        fig = build(results)
        if fig is not None:
            figures.append({"name": name, "title": title, "svg": svg_text(fig)})
    context = {
        "campaign": campaign,
        "results": results,
        "figures": {f["name"]: f for f in figures},
        "agreement": [{**section, "matrix": agreement_matrix(section)} for section in results["agreement"]],
        "export_formats": ["csv", "jsonl", "parquet"],
    }
    return render(request, "labelsite/manage/campaign_results.html", context)
