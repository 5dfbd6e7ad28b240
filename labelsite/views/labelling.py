"""Labeller pages under /label/: campaigns, the blind item form (HTMX, plain POST fallback), skip, own history.

These views only ever see blind dataclasses and item codes (labelsite.selectors.blind), never an SAE.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from compute.jobs import JobInputError
from compute.models import SAE, FeatureDashboard
from compute.selectors.dashboard_html import tokens_html
from compute.services.probe import probe_text
from labelsite import questions as schema
from labelsite.forms import JudgmentForm, SkipForm
from labelsite.selectors.blind import (
    BlindItem,
    blind_campaign,
    blind_campaigns,
    blind_item,
    labeller_progress,
    own_judgments,
    own_skip,
    probe_target,
)
from labelsite.services import LabelError
from labelsite.services.assignment import assignment_next_code, assignment_skip, assignment_skip_undo
from labelsite.services.judgments import judgment_submit

SHOWN_IN_HISTORY = (schema.TEXT, schema.SCORE, schema.YESNO, schema.CHOICE)
RECENT = 5  # the labeller's recent items, one key (h) away
NO_STORE = "no-store"  # judgments are personal; never cache them in shared caches


@login_required
def label_index(request: HttpRequest) -> HttpResponse:
    return render(request, "labelsite/label_index.html", {"campaigns": blind_campaigns(labeller=request.user)})


@login_required
def campaign_page(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = blind_campaign(campaign_id=campaign_id, labeller=request.user)
    if campaign is None:
        raise Http404("No such campaign.")
    progress = labeller_progress(campaign=campaign, labeller_id=request.user.pk)
    return render(request, "labelsite/label_campaign.html", {"campaign": campaign, "progress": progress})


@login_required
@require_POST
def next_item(request: HttpRequest, campaign_id: int) -> HttpResponse:
    if blind_campaign(campaign_id=campaign_id, labeller=request.user) is None:
        raise Http404("No such campaign.")
    return _go_next(request, campaign_id)


def _go_next(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Send the labeller to their next item, or back to the campaign page when nothing is left."""
    try:
        code = assignment_next_code(campaign_id=campaign_id, labeller=request.user)
    except LabelError as exc:
        messages.error(request, str(exc))
        code = None
    else:
        if code is None:
            messages.success(request, "Nothing left for you in this campaign. Thank you!")
    if code is None:
        url = reverse("label:campaign", args=[campaign_id])
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    if request.htmx:
        response = _render_item(request, _item_or_404(request, code), partial=True)
        return push_url(response, reverse("label:item", args=[code]))
    return redirect("label:item", code=code)


def _item_or_404(request: HttpRequest, code: str) -> BlindItem:
    item = blind_item(item_code=code, labeller=request.user)
    if item is None:
        raise Http404("This item is not assigned to you.")
    return item


def _skipped_page(request: HttpRequest, code: str) -> HttpResponse | None:
    """For the labeller's own skipped item, a 404 that says so (and offers the undo while it is allowed)."""
    skip = own_skip(labeller=request.user, item_code=code)
    if skip is None:
        return None
    campaign = blind_campaign(campaign_id=skip.campaign_id, labeller=request.user)
    return render(request, "labelsite/item_skipped.html", {"skip": skip, "campaign": campaign}, status=404)


def _render_item(
    request: HttpRequest,
    item: BlindItem,
    *,
    form: JudgmentForm | None = None,
    skip_form: SkipForm | None = None,
    partial: bool = False,
    status: int = 200,
) -> HttpResponse:
    if form is None:
        form = JudgmentForm(
            campaign=item.campaign, components=item.components, initial={**item.answers, "time_spent_ms": ""}
        )
    groups = form.groups()
    recent = [
        j
        for j in own_judgments(campaign_id=item.campaign.id, labeller=request.user, limit=RECENT + 1)
        if j["item__code"] != item.code
    ][:RECENT]
    context = {
        "recent": recent,
        "previous": recent[0]["item__code"] if recent else None,
        "after_next": request.GET.get("after") == "next" or request.POST.get("after") == "next",
        "item": item,
        "campaign": item.campaign,
        "form": form,
        "panel_questions": [(panel, groups.get(panel.kind, [])) for panel in item.panels],
        "feature_questions": groups.get(None, []),
        "skip_form": skip_form or SkipForm(),
        "recent_skip": own_skip(labeller=request.user, campaign_id=item.campaign.id),
        "partial": partial,
        "progress": labeller_progress(campaign=item.campaign, labeller_id=request.user.pk),
        "shown_at_ms": int(time.time() * 1000),
    }
    template = "labelsite/label_item.html#workspace" if partial else "labelsite/label_item.html"
    response = render(request, template, context, status=status)
    response["Cache-Control"] = NO_STORE
    return response


@login_required
def item_page(request: HttpRequest, code: str) -> HttpResponse:
    if request.method != "POST" and (skipped := _skipped_page(request, code)) is not None:
        return skipped
    item = _item_or_404(request, code)
    if request.method != "POST":
        return _render_item(request, item)
    form = JudgmentForm(request.POST, campaign=item.campaign, components=item.components)
    if form.is_valid():
        revising = item.status == "done"
        try:
            judgment_submit(
                item_code=item.code,
                labeller=request.user,
                answers=form.answers(),
                time_spent_ms=_time_spent(request, form),
                panel_order=item.panel_order,
            )
        except LabelError as exc:
            form.add_error(None, str(exc))
        else:
            if revising:
                messages.success(request, f"Your judgment of item {item.code} was revised.")
            if revising and request.POST.get("after") == "next":
                return _go_next(request, item.campaign.id)  # reopened with Backspace or from the recent list
            if revising:
                url = reverse("label:mine", args=[item.campaign.id])
                return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
            return _go_next(request, item.campaign.id)
    return _render_item(request, item, form=form, partial=bool(request.htmx))


def _time_spent(request: HttpRequest, form: JudgmentForm) -> int:
    """The page's own measure of visible time when JavaScript ran; else the time since the page was served."""
    measured = form.cleaned_data.get("time_spent_ms")
    if measured:
        return measured
    try:
        shown_at = int(request.POST.get("shown_at_ms", ""))
    except ValueError:
        return 0
    return max(0, int(time.time() * 1000) - shown_at)


@login_required
@require_POST
def skip_item(request: HttpRequest, code: str) -> HttpResponse:
    item = _item_or_404(request, code)
    skip_form = SkipForm(request.POST)
    if skip_form.is_valid():
        try:
            assignment_skip(item_code=item.code, labeller=request.user, reason=skip_form.cleaned_data["reason"])
        except LabelError as exc:
            skip_form.add_error(None, str(exc))
        else:
            return _go_next(request, item.campaign.id)
    return _render_item(request, item, skip_form=skip_form, partial=bool(request.htmx))


@login_required
@require_POST
def unskip_item(request: HttpRequest, code: str) -> HttpResponse:
    """Undo one's own recent skip: back to that item."""
    try:
        assignment_skip_undo(item_code=code, labeller=request.user)
    except LabelError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Skip undone: item {code} is yours to judge again.")
    url = reverse("label:item", args=[code])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
def my_judgments(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = blind_campaign(campaign_id=campaign_id, labeller=request.user)
    if campaign is None:
        raise Http404("No such campaign.")
    columns = [q for q in campaign.questions if q["type"] in SHOWN_IN_HISTORY]
    judgments = own_judgments(campaign_id=campaign.id, labeller=request.user)
    context = {
        "campaign": campaign,
        "columns": columns,
        "judgments": [(j, [(j["answers"].get(q["key"]), q) for q in columns]) for j in judgments],
        "progress": labeller_progress(campaign=campaign, labeller_id=request.user.pk),
    }
    return render(request, "labelsite/label_mine.html", context)


@login_required
@require_POST
def item_probe(request: HttpRequest, code: str) -> HttpResponse:
    """The live probe for a labeller, by item code: per-token shading and values relative to the feature's domain
    max only (raw magnitudes could tell SAEs apart); 404 unless the item is theirs and the campaign offers it."""
    target = probe_target(item_code=code, labeller=request.user)
    if target is None:
        raise Http404("No live probe for this item.")
    sae_id, feature_index, corpus_id = target
    text = request.POST.get("text", "")
    corpus_max = (
        FeatureDashboard.objects.filter(
            dashboard_set__sae_id=sae_id, dashboard_set__corpus_id=corpus_id, feature_index=feature_index
        )
        .values_list("max_activation", flat=True)
        .first()
    )
    try:
        result = probe_text(sae=SAE.objects.get(pk=sae_id), feature_index=feature_index, text=text[:4000])
    except JobInputError as exc:
        return render(request, "labelsite/_probe_result.html", {"error": str(exc)}, status=400)
    scale = corpus_max if corpus_max and corpus_max > 0 else None
    relative = [round(v / scale, 2) if scale else (1.0 if v > 0 else 0.0) for v in result["values"]]
    context = {
        "html": tokens_html(result["tokens"], relative, 1.0),
        "rows": list(zip(result["tokens"], relative, strict=True)),
    }
    return render(request, "labelsite/_probe_result.html", context)
