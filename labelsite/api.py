"""JSON API. /api/label/: a labeller's own campaigns, blind items and own judgments.
/api/manage/: admins (staff) see and run everything. Serializers exist only at this edge."""

from __future__ import annotations

from dataclasses import asdict

from django.http import Http404
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from config.pagination import paginated_response
from config.roles import IsAdmin
from labelsite import questions as schema
from labelsite.models import PANEL_EXTRAS, Campaign
from labelsite.selectors.admin import campaign_items, campaign_progress
from labelsite.selectors.blind import (
    BlindItem,
    blind_campaign,
    blind_campaigns,
    blind_item,
    labeller_progress,
    own_judgments,
)
from labelsite.services import LabelError
from labelsite.services.assignment import assignment_next_code, assignment_skip
from labelsite.services.campaigns import (
    SourceSpec,
    campaign_audit_run,
    campaign_close,
    campaign_create,
    campaign_open,
    campaign_reassign,
    campaign_reopen,
)
from labelsite.services.judgments import judgment_submit


def _error(exc: LabelError, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": str(exc)}, status=code)


def _progress(progress) -> dict:
    return {**asdict(progress), "remaining": progress.remaining, "percent": progress.percent}


def _blind_item_json(item: BlindItem) -> dict:
    return {
        "code": item.code,
        "campaign": item.campaign.id,
        "status": item.status,
        "editable": item.editable,
        "panels": [asdict(p) for p in item.panels],
        "questions": item.campaign.questions,
        "answers": item.answers or None,
    }


# --- labellers ------------------------------------------------------------------------------------


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_campaigns(request: Request) -> Response:
    rows = blind_campaigns(labeller=request.user)
    return paginated_response(request, rows, lambda row: {**asdict(row[0]), "progress": _progress(row[1])})


def _own_campaign(request: Request, campaign_id: int):
    campaign = blind_campaign(campaign_id=campaign_id, labeller=request.user)
    if campaign is None:
        raise Http404
    return campaign


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_campaign(request: Request, campaign_id: int) -> Response:
    campaign = _own_campaign(request, campaign_id)
    progress = labeller_progress(campaign=campaign, labeller_id=request.user.pk)
    return Response({**asdict(campaign), "progress": _progress(progress)})


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def label_next(request: Request, campaign_id: int) -> Response:
    campaign = _own_campaign(request, campaign_id)
    try:
        code = assignment_next_code(campaign_id=campaign.id, labeller=request.user)
    except LabelError as exc:
        return _error(exc, status.HTTP_409_CONFLICT)
    if code is None:
        return Response({"item": None, "detail": "Nothing left for you in this campaign."})
    return Response({"item": _blind_item_json(blind_item(item_code=code, labeller=request.user))})


def _own_item(request: Request, code: str) -> BlindItem:
    item = blind_item(item_code=code, labeller=request.user)
    if item is None:
        raise Http404
    return item


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_item(request: Request, code: str) -> Response:
    return Response(_blind_item_json(_own_item(request, code)))


def _answer_field(question: dict) -> serializers.Field:
    """The API field of one question; whether a required one is answered is the service's check."""
    kind = question["type"]
    if kind == schema.TEXT:
        return serializers.CharField(required=False, allow_blank=True, max_length=schema.MAX_TEXT, default="")
    if kind == schema.SCORE:
        return serializers.IntegerField(required=False, allow_null=True, default=None)
    if kind == schema.YESNO:
        return serializers.BooleanField(required=False, default=False)
    if kind == schema.CHOICE:
        return serializers.CharField(required=False, allow_null=True, allow_blank=True, default=None)
    return serializers.DictField(child=serializers.CharField(), required=False, default=dict)


def judgment_in(questions: list[dict]) -> serializers.Serializer:
    """The judgment input serializer of a campaign: one flat field per question key, and time_spent_ms."""
    fields = {q["key"]: _answer_field(q) for q in questions}
    fields["time_spent_ms"] = serializers.IntegerField(required=False, min_value=0, default=0)
    return type("JudgmentIn", (serializers.Serializer,), fields)


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def label_judge(request: Request, code: str) -> Response:
    item = _own_item(request, code)
    data = judgment_in(item.campaign.questions)(data=request.data)
    data.is_valid(raise_exception=True)
    values = dict(data.validated_data)
    time_spent_ms = values.pop("time_spent_ms")
    try:
        judgment, changed = judgment_submit(
            item_code=item.code,
            labeller=request.user,
            answers=values,
            time_spent_ms=time_spent_ms,
            panel_order=item.panel_order,
        )
    except LabelError as exc:
        return _error(exc, status.HTTP_409_CONFLICT)
    body = {"item_code": item.code, "changed": changed, "revisions": judgment.revisions, "answers": judgment.answers}
    return Response(body, status=status.HTTP_201_CREATED if changed and judgment.revisions == 0 else 200)


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def label_skip(request: Request, code: str) -> Response:
    item = _own_item(request, code)
    try:
        assignment_skip(item_code=item.code, labeller=request.user, reason=str(request.data.get("reason", "")))
    except LabelError as exc:
        return _error(exc)
    return Response({"item_code": item.code, "status": "skipped"})


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_judgments(request: Request, campaign_id: int) -> Response:
    campaign = _own_campaign(request, campaign_id)
    rows = own_judgments(campaign_id=campaign.id, labeller=request.user)
    return paginated_response(request, rows, lambda r: {"item_code": r.pop("item__code"), **r})


# --- admins ---------------------------------------------------------------------------------------


class SourceIn(serializers.Serializer):
    sae_id = serializers.IntegerField()
    n_features = serializers.IntegerField(min_value=1, default=100)


class CampaignIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")
    rubric = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True, default=None)
    # Question objects (labelsite.questions) or names of the default groups; checked by campaign_create.
    questions = serializers.ListField(child=serializers.JSONField(), required=False, allow_null=True, default=None)
    sources = SourceIn(many=True)
    domain_corpus_id = serializers.IntegerField()
    general_corpus_id = serializers.IntegerField()
    labeller_ids = serializers.ListField(child=serializers.IntegerField(), default=list)
    min_frequency = serializers.FloatField(required=False, allow_null=True, default=None)
    seed = serializers.IntegerField(min_value=0, default=0)
    panel_order = serializers.ChoiceField(choices=Campaign.PanelOrder.choices, default=Campaign.PanelOrder.DOMAIN_FIRST)
    overlap = serializers.IntegerField(min_value=1, default=1)
    hide_mapping_until_closed = serializers.BooleanField(default=False)
    lease_seconds = serializers.IntegerField(min_value=60, default=30 * 60)
    max_skips = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    sampling = serializers.ChoiceField(choices=Campaign.Sampling.choices, default=Campaign.Sampling.RANDOM)
    match_general = serializers.BooleanField(default=False)
    panel_extras = serializers.ListField(child=serializers.ChoiceField(choices=sorted(PANEL_EXTRAS)), default=list)


def _campaign_json(campaign: Campaign, *, detail: bool = False) -> dict:
    body = {
        "id": campaign.pk,
        "name": campaign.name,
        "status": campaign.status,
        "guidelines": campaign.guidelines,
        "questions": campaign.questions,
        "domain_corpus_id": campaign.domain_corpus_id,
        "general_corpus_id": campaign.general_corpus_id,
        "min_frequency": campaign.min_frequency,
        "seed": campaign.seed,
        "panel_order": campaign.panel_order,
        "overlap": campaign.overlap,
        "hide_mapping_until_closed": campaign.hide_mapping_until_closed,
        "mapping_visible": campaign.mapping_visible,
        "lease_seconds": campaign.lease_seconds,
        "max_skips": campaign.max_skips,
        "sampling": campaign.sampling,
        "match_general": campaign.match_general,
        "panel_extras": campaign.panel_extras,
        "sampling_report": campaign.sampling_report,
        "audit": campaign.audit,
        "labeller_ids": sorted(u.pk for u in campaign.labellers.all()),
        "build_job_ids": sorted(j.pk for j in campaign.build_jobs.all()),
        "prepare_error": campaign.prepare_error,
        "created_at": campaign.created_at,
    }
    if campaign.mapping_visible:
        body["sources"] = [
            {"sae_id": s.sae_id, "sae": s.sae.name, "method": s.sae.method, "n_features": s.n_features}
            for s in campaign.sources.all()
        ]
    if detail:
        body["progress"] = campaign_progress(campaign=campaign)
    return body


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = (
        Campaign.objects.prefetch_related("sources__sae", "labellers", "build_jobs").filter(pk=campaign_id).first()
    )
    if campaign is None:
        raise Http404
    return campaign


@api_view(["GET", "POST"])
@permission_classes([IsAdmin])
def manage_campaigns(request: Request) -> Response:
    if request.method == "GET":
        campaigns = Campaign.objects.prefetch_related("sources__sae", "labellers", "build_jobs")
        return paginated_response(request, campaigns, _campaign_json)
    data = CampaignIn(data=request.data)
    data.is_valid(raise_exception=True)
    values = dict(data.validated_data)
    values["sources"] = [SourceSpec(**s) for s in values["sources"]]
    try:
        campaign = campaign_create(created_by=request.user, **values)
    except LabelError as exc:
        return _error(exc)
    return Response(_campaign_json(_campaign_or_404(campaign.pk), detail=True), status=status.HTTP_201_CREATED)


@api_view(["GET"])
@permission_classes([IsAdmin])
def manage_campaign(request: Request, campaign_id: int) -> Response:
    return Response(_campaign_json(_campaign_or_404(campaign_id), detail=True))


def _action(campaign_id: int, action) -> Response:
    campaign = _campaign_or_404(campaign_id)
    try:
        action(campaign_id=campaign.pk)
    except LabelError as exc:
        return _error(exc, status.HTTP_409_CONFLICT)
    return Response(_campaign_json(_campaign_or_404(campaign.pk), detail=True))


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_open(request: Request, campaign_id: int) -> Response:
    """Open (or advance) a campaign; one whose blinding audit fails stays a draft unless `confirm_leak` is true."""
    confirm = request.data.get("confirm_leak") in (True, "true", "1", 1)
    return _action(
        campaign_id,
        lambda campaign_id: campaign_open(campaign_id=campaign_id, user=request.user, confirm_leak=confirm),
    )


@api_view(["GET", "POST"])
@permission_classes([IsAdmin])
def manage_audit(request: Request, campaign_id: int) -> Response:
    """GET: the last blinding audit; POST: run it now (sampling and rendering a draft's items if needed)."""
    campaign = _campaign_or_404(campaign_id)
    if request.method == "GET":
        return Response(campaign.audit or None)
    try:
        result = campaign_audit_run(campaign_id=campaign.pk)
    except LabelError as exc:
        return _error(exc, status.HTTP_409_CONFLICT)
    return Response(result.as_dict())


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_close(request: Request, campaign_id: int) -> Response:
    return _action(campaign_id, campaign_close)


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_reopen(request: Request, campaign_id: int) -> Response:
    return _action(campaign_id, campaign_reopen)


class ReassignIn(serializers.Serializer):
    from_user_id = serializers.IntegerField()
    to_user_id = serializers.IntegerField(required=False, allow_null=True, default=None)


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_reassign(request: Request, campaign_id: int) -> Response:
    campaign = _campaign_or_404(campaign_id)
    data = ReassignIn(data=request.data)
    data.is_valid(raise_exception=True)
    try:
        released = campaign_reassign(campaign_id=campaign.pk, **data.validated_data)
    except LabelError as exc:
        return _error(exc)
    return Response({"released": released})


@api_view(["GET"])
@permission_classes([IsAdmin])
def manage_items(request: Request, campaign_id: int) -> Response:
    return paginated_response(request, campaign_items(campaign=_campaign_or_404(campaign_id), limit=100_000))
