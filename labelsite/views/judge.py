"""The LLM judge from the results page: queue its job (the results section itself is a template tag)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from config.roles import admin_required
from labelsite.models import Campaign
from labelsite.services import LabelError
from labelsite.services.judge import campaign_judge_start


@admin_required
@require_POST
def campaign_judge_start_view(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    try:
        job = campaign_judge_start(campaign_id=campaign.pk, user=request.user)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"The LLM judge is answering the campaign's score and choice questions (job {job.pk})."
        )
    return redirect(reverse("manage:campaign-results", args=[campaign.pk]) + "#judge")
