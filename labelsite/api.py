"""JSON API. /api/label/: a labeller's own campaigns, blind items and own judgments.
/api/manage/: admins (staff) see and run everything. Serializers exist only at this edge; service errors
become HTTP statuses in one place (config.api.exception_handler)."""

from __future__ import annotations

from django.http import Http404
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from config.pagination import paginated_response
from config.roles import IsAdmin
from labelsite import questions as schema
from labelsite.models import MAX_REPEAT_SHARE, PANEL_EXTRAS, Campaign
from labelsite.selectors.admin import campaign_items, campaign_progress
from labelsite.selectors.blind import (
    BlindItem,
    blind_campaign,
    blind_campaigns,
    blind_item,
    labeller_progress,
    own_judgments,
)
from labelsite.services.assignment import assignment_next_code, assignment_skip
from labelsite.services.campaigns import (
    GoldSpec,
    SourceSpec,
    campaign_audit_run,
    campaign_close,
    campaign_create,
    campaign_open_start,
    campaign_reassign,
    campaign_reopen,
)
from labelsite.services.judgments import judgment_submit

# --- output -----------------------------------------------------------------------------------------


class ProgressOut(serializers.Serializer):
    done = serializers.IntegerField()
    held = serializers.IntegerField()
    skipped = serializers.IntegerField()
    available = serializers.IntegerField()
    remaining = serializers.IntegerField()
    percent = serializers.IntegerField()


class BlindCampaignOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    status_label = serializers.CharField()
    guidelines_html = serializers.CharField()
    questions = serializers.JSONField()
    overlap = serializers.IntegerField()


class PanelOut(serializers.Serializer):
    kind = serializers.CharField()
    title = serializers.CharField()
    html = serializers.CharField()


class BlindItemOut(serializers.Serializer):
    code = serializers.CharField()
    campaign = serializers.IntegerField(source="campaign.id")
    status = serializers.CharField()
    editable = serializers.BooleanField()
    panels = PanelOut(many=True)
    questions = serializers.JSONField(source="campaign.questions")
    answers = serializers.SerializerMethodField()

    def get_answers(self, item: BlindItem) -> dict | None:
        return item.answers or None


class JudgmentOut(serializers.Serializer):
    item_code = serializers.CharField()
    changed = serializers.BooleanField()
    revisions = serializers.IntegerField()
    answers = serializers.JSONField()


class OwnJudgmentOut(serializers.Serializer):
    item_code = serializers.CharField(source="item__code")
    answers = serializers.JSONField()
    time_spent_ms = serializers.IntegerField()
    revisions = serializers.IntegerField()
    updated_at = serializers.DateTimeField()


class SkipOut(serializers.Serializer):
    item_code = serializers.CharField()
    status = serializers.CharField()


def _with_progress(campaign, progress) -> dict:
    return {**BlindCampaignOut(campaign).data, "progress": ProgressOut(progress).data}


# --- labellers ------------------------------------------------------------------------------------


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_campaigns(request: Request) -> Response:
    rows = blind_campaigns(labeller=request.user)
    return paginated_response(request, rows, lambda row: _with_progress(*row))


def _own_campaign(request: Request, campaign_id: int):
    campaign = blind_campaign(campaign_id=campaign_id, labeller=request.user)
    if campaign is None:
        raise Http404
    return campaign


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_campaign(request: Request, campaign_id: int) -> Response:
    campaign = _own_campaign(request, campaign_id)
    return Response(_with_progress(campaign, labeller_progress(campaign=campaign, labeller_id=request.user.pk)))


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def label_next(request: Request, campaign_id: int) -> Response:
    campaign = _own_campaign(request, campaign_id)
    code = assignment_next_code(campaign_id=campaign.id, labeller=request.user)
    if code is None:
        return Response({"item": None, "detail": "Nothing left for you in this campaign."})
    return Response({"item": BlindItemOut(blind_item(item_code=code, labeller=request.user)).data})


def _own_item(request: Request, code: str) -> BlindItem:
    item = blind_item(item_code=code, labeller=request.user)
    if item is None:
        raise Http404
    return item


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_item(request: Request, code: str) -> Response:
    return Response(BlindItemOut(_own_item(request, code)).data)


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
    judgment, changed = judgment_submit(
        item_code=item.code,
        labeller=request.user,
        answers=values,
        time_spent_ms=time_spent_ms,
        panel_order=item.panel_order,
    )
    body = JudgmentOut(
        {"item_code": item.code, "changed": changed, "revisions": judgment.revisions, "answers": judgment.answers}
    ).data
    return Response(body, status=status.HTTP_201_CREATED if changed and judgment.revisions == 0 else 200)


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def label_skip(request: Request, code: str) -> Response:
    item = _own_item(request, code)
    assignment_skip(item_code=item.code, labeller=request.user, reason=str(request.data.get("reason", "")))
    return Response(SkipOut({"item_code": item.code, "status": "skipped"}).data)


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def label_judgments(request: Request, campaign_id: int) -> Response:
    campaign = _own_campaign(request, campaign_id)
    rows = own_judgments(campaign_id=campaign.id, labeller=request.user)
    return paginated_response(request, rows, lambda row: OwnJudgmentOut(row).data)


# --- admins ---------------------------------------------------------------------------------------


class SourceIn(serializers.Serializer):
    sae_id = serializers.IntegerField()
    n_features = serializers.IntegerField(min_value=1, default=100)


class GoldIn(serializers.Serializer):
    sae_id = serializers.IntegerField()
    feature_index = serializers.IntegerField(min_value=0)
    expected = serializers.DictField(help_text="Expected answers {question key: answer}, checked by campaign_create.")


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
    ask_source_guess = serializers.BooleanField(default=True)
    panel_extras = serializers.ListField(child=serializers.ChoiceField(choices=sorted(PANEL_EXTRAS)), default=list)
    repeat_share = serializers.FloatField(min_value=0.0, max_value=MAX_REPEAT_SHARE, default=0.0)
    judge_only_features = serializers.IntegerField(min_value=0, default=0)
    gold = GoldIn(many=True, required=False, default=list)


class SourceOut(serializers.Serializer):
    sae_id = serializers.IntegerField()
    sae = serializers.CharField(source="sae.name")
    method = serializers.CharField(source="sae.method")
    n_features = serializers.IntegerField()


class CampaignOut(serializers.ModelSerializer):
    """A campaign for admins; `sources` (which SAEs) and `gold` only while the mapping may be shown."""

    domain_corpus_id = serializers.IntegerField()
    general_corpus_id = serializers.IntegerField()
    mapping_visible = serializers.BooleanField()
    labeller_ids = serializers.SerializerMethodField()
    build_job_ids = serializers.SerializerMethodField()
    sources = SourceOut(many=True)

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "status", "guidelines", "questions", "domain_corpus_id", "general_corpus_id",
            "min_frequency", "seed", "panel_order", "overlap", "hide_mapping_until_closed", "mapping_visible",
            "lease_seconds", "max_skips", "sampling", "match_general", "panel_extras", "repeat_share", "gold",
            "judge_only_features", "sampling_report", "audit",
            "labeller_ids", "build_job_ids", "prepare_error", "created_at", "sources",
        ]  # fmt: skip
        read_only_fields = fields

    def get_labeller_ids(self, campaign: Campaign) -> list[int]:
        return sorted(u.pk for u in campaign.labellers.all())

    def get_build_job_ids(self, campaign: Campaign) -> list[int]:
        return sorted(j.pk for j in campaign.build_jobs.all())

    def to_representation(self, campaign: Campaign) -> dict:
        body = super().to_representation(campaign)
        if not campaign.mapping_visible:
            del body["sources"], body["gold"]  # gold items name their SAE
        return body


class CampaignDetailOut(CampaignOut):
    progress = serializers.SerializerMethodField()

    class Meta(CampaignOut.Meta):
        fields = [*CampaignOut.Meta.fields, "progress"]
        read_only_fields = fields

    def get_progress(self, campaign: Campaign) -> dict:
        return campaign_progress(campaign=campaign)


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
        return paginated_response(request, campaigns, lambda c: CampaignOut(c).data)
    data = CampaignIn(data=request.data)
    data.is_valid(raise_exception=True)
    values = dict(data.validated_data)
    values["sources"] = [SourceSpec(**s) for s in values["sources"]]
    values["gold"] = [GoldSpec(**g) for g in values["gold"]]
    campaign = campaign_create(created_by=request.user, **values)
    return Response(CampaignDetailOut(_campaign_or_404(campaign.pk)).data, status=status.HTTP_201_CREATED)


@api_view(["GET"])
@permission_classes([IsAdmin])
def manage_campaign(request: Request, campaign_id: int) -> Response:
    return Response(CampaignDetailOut(_campaign_or_404(campaign_id)).data)


def _action(campaign_id: int, action) -> Response:
    campaign = _campaign_or_404(campaign_id)
    action(campaign_id=campaign.pk)
    return Response(CampaignDetailOut(_campaign_or_404(campaign.pk)).data)


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_open(request: Request, campaign_id: int) -> Response:
    """Queue the job that opens the campaign (202, its id in `open_job_id`); 200 when it is already open.
    The job runs the blinding audit: one that fails leaves the campaign a draft unless `confirm_leak` is true."""
    campaign = _campaign_or_404(campaign_id)
    confirm = request.data.get("confirm_leak") in (True, "true", "1", 1)
    job = campaign_open_start(campaign_id=campaign.pk, user=request.user, confirm_leak=confirm)
    body = {**CampaignDetailOut(_campaign_or_404(campaign.pk)).data, "open_job_id": job.pk if job else None}
    return Response(body, status=status.HTTP_202_ACCEPTED if job else status.HTTP_200_OK)


@api_view(["GET", "POST"])
@permission_classes([IsAdmin])
def manage_audit(request: Request, campaign_id: int) -> Response:
    """GET: the last blinding audit; POST: run it now (sampling and rendering a draft's items if needed)."""
    campaign = _campaign_or_404(campaign_id)
    if request.method == "GET":
        return Response(campaign.audit or None)
    return Response(campaign_audit_run(campaign_id=campaign.pk).as_dict())


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_close(request: Request, campaign_id: int) -> Response:
    return _action(campaign_id, campaign_close)


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_reopen(request: Request, campaign_id: int) -> Response:
    return _action(campaign_id, campaign_reopen)


class ReassignOut(serializers.Serializer):
    released = serializers.IntegerField()


class ReassignIn(serializers.Serializer):
    from_user_id = serializers.IntegerField()
    to_user_id = serializers.IntegerField(required=False, allow_null=True, default=None)


@api_view(["POST"])
@permission_classes([IsAdmin])
def manage_reassign(request: Request, campaign_id: int) -> Response:
    campaign = _campaign_or_404(campaign_id)
    data = ReassignIn(data=request.data)
    data.is_valid(raise_exception=True)
    released = campaign_reassign(campaign_id=campaign.pk, **data.validated_data)
    return Response(ReassignOut({"released": released}).data)


@api_view(["GET"])
@permission_classes([IsAdmin])
def manage_items(request: Request, campaign_id: int) -> Response:
    return paginated_response(request, campaign_items(campaign=_campaign_or_404(campaign_id), limit=100_000))
