"""A campaign's automated-vs-human explanations page (admins), its start button and exports."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from compute.views.autointerp import comparison_download
from config.roles import admin_required
from labelsite.models import Campaign
from labelsite.selectors.autointerp import campaign_autointerp, campaign_autointerp_jobs
from labelsite.services import LabelError
from labelsite.services.autointerp import campaign_autointerp_start


@admin_required
def campaign_autointerp_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        comparison, hidden = campaign_autointerp(campaign=campaign), ""
    except LabelError as exc:
        comparison, hidden = None, str(exc)
    context = {
        "campaign": campaign,
        "comparison": comparison,
        "hidden": hidden,
        "jobs": campaign_autointerp_jobs(campaign=campaign),
    }
    return render(request, "labelsite/manage/campaign_autointerp.html", context)


@admin_required
@require_POST
def campaign_autointerp_start_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        jobs, skipped = campaign_autointerp_start(campaign_id=campaign.pk, created_by=request.user)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Explaining and scoring: {len(jobs)} job(s).")
        for note in skipped:
            messages.warning(request, f"Skipped {note}")
    return redirect("manage:campaign-autointerp", campaign_id=campaign.pk)


@admin_required
def campaign_autointerp_export(request: HttpRequest, campaign_id: int, fmt: str) -> HttpResponse:
    if fmt not in ("csv", "json"):
        raise Http404("Exports are .csv or .json.")
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        comparison = campaign_autointerp(campaign=campaign)
    except LabelError as exc:
        return HttpResponse(str(exc), status=409, content_type="text/plain")
    return comparison_download(comparison, fmt=fmt, filename=f"campaign-{campaign.pk}-autointerp")
