"""The LLM judge from the results page: queue its job (the results section itself is a template tag); the
campaign form's planner."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
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


def _count(request: HttpRequest, name: str, default: int, low: int) -> int:
    """A count from the campaign form (the planner previews it before it is valid): the default when unreadable."""
    try:
        return max(low, int(request.POST.get(name, default)))
    except ValueError:
        return default


@admin_required
@require_POST
def campaign_plan_preview(request: HttpRequest) -> HttpResponse:
    """The planner's estimate for the campaign form's design (features per SAE, overlap, judge-only features)."""
    from labelsite.forms import PlannerForm
    from labelsite.statistics import plan_campaign

    form = PlannerForm(request.POST, prefix="plan")
    plan = None
    if form.is_valid():
        data = form.cleaned_data
        labellers = _count(request, "overlap", 1, 1)
        plan = plan_campaign(
            feature_sd=data["feature_sd"],
            labeller_sd=data["labeller_sd"],
            rho=data["rho"],
            rho_labellers=labellers,
            items=_count(request, "features_per_sae", 100, 2),
            labellers=labellers,
            judge_only=_count(request, "judge_only_features", 0, 0),
            target_width=data["target_width"],
        )
    return render(request, "labelsite/manage/_plan.html", {"plan": plan, "planner": form})
