"""The results API for admins and analysts (under /api/manage/, token or session authentication):
a campaign's results as JSON, per-judgment exports (CSV, JSON Lines, Parquet; streamed), the breakdown as
CSV/JSON and every results chart as PNG/SVG. Anonymous requests get 401, labellers 403."""

from __future__ import annotations

import csv
import io
import json

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.figures import FORMATS, figure_response
from config.pagination import paginated_response
from config.roles import IsAdmin
from labelsite.models import Campaign, Judgment
from labelsite.selectors.admin import require_mapping
from labelsite.selectors.exports import EXPORT_FORMATS, export_rows, export_stream
from labelsite.selectors.result_figures import FIGURES
from labelsite.selectors.results import breakdown_rows, campaign_results, results_json
from labelsite.services import LabelError


class AnyAccept(BaseContentNegotiation):
    """Files are what the URL names (.csv, .parquet, .png ...), whatever the client's Accept header says;
    errors are JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AdminView(APIView):
    permission_classes = [IsAdmin]

    def campaign(self, campaign_id: int) -> Campaign:
        return get_object_or_404(Campaign, pk=campaign_id)


def _with_autointerp(payload: dict, campaign: Campaign) -> dict:
    """The results plus the human-vs-automated explanation comparison (detection/fuzzing scores)."""
    from labelsite.selectors.autointerp import campaign_autointerp

    try:
        return {**payload, "autointerp": campaign_autointerp(campaign=campaign)}
    except LabelError:
        return payload


def _wants_identities(request: Request) -> bool:
    return request.query_params.get("identities", "").lower() in ("1", "true", "yes")


class ResultsView(AdminView):
    """The campaign's results: means with intervals, distributions, comparisons, per-labeller figures,
    measured vs rated, agreement. Labellers are named by pseudonym unless `?identities=1`."""

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign(campaign_id)
        results = campaign_results(campaign=campaign, identities=_wants_identities(request))
        return Response(_with_autointerp(results_json(results), campaign))


class JudgeView(AdminView):
    """GET: the LLM judge's answers combined with the labellers' (prediction-powered means, intervals and
    differences per source and score question; judge–human agreement). POST: queue the judge job (202, its
    id in `job_id`; `max_tokens`, `batch_size` optional)."""

    def get(self, request: Request, campaign_id: int) -> Response:
        from labelsite.selectors.judge_results import judge_results

        return Response(judge_results(campaign=self.campaign(campaign_id)))

    def post(self, request: Request, campaign_id: int) -> Response:
        from labelsite.services.judge import campaign_judge_start

        options = {k: request.data[k] for k in ("max_tokens", "batch_size") if k in request.data}
        job = campaign_judge_start(campaign_id=self.campaign(campaign_id).pk, user=request.user, **options)
        return Response({"job_id": job.pk, "status": job.status}, status=202)


class JudgmentListView(AdminView):
    """Per-judgment rows (as in the exports), one page at a time."""

    def get(self, request: Request, campaign_id: int) -> Response:
        campaign = self.campaign(campaign_id)
        identities = _wants_identities(request)
        require_mapping(campaign)
        ids = Judgment.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
        response = paginated_response(request, ids)
        page = export_rows(campaign=campaign, judgment_ids=list(response.data["results"]), identities=identities)
        response.data["results"] = [_jsonable(row) for row in page]
        return response


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


class ExportView(AdminView):
    """Every judgment and skip as a file (csv, jsonl, parquet), streamed; `?identities=1` for usernames,
    `?history=1` for the earlier versions of revised judgments too."""

    content_negotiation_class = AnyAccept

    def get(self, request: Request, campaign_id: int, fmt: str):
        campaign = self.campaign(campaign_id)
        if fmt not in EXPORT_FORMATS:
            return Response({"detail": f"Unknown format; use one of {sorted(EXPORT_FORMATS)}."}, status=404)
        history = request.query_params.get("history", "").lower() in ("1", "true", "yes")
        chunks = export_stream(campaign=campaign, fmt=fmt, identities=_wants_identities(request), history=history)
        response = StreamingHttpResponse(chunks, content_type=EXPORT_FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-judgments.{fmt}"'
        return response


class BreakdownView(AdminView):
    """The score breakdown: one row per source and score question (csv), or the whole results (json)."""

    content_negotiation_class = AnyAccept

    def get(self, request: Request, campaign_id: int, fmt: str):
        campaign = self.campaign(campaign_id)
        if fmt not in ("csv", "json"):
            return Response({"detail": "Unknown format; use csv or json."}, status=404)
        results = campaign_results(campaign=campaign, identities=_wants_identities(request))
        if fmt == "json":
            payload = _with_autointerp(results_json(results), campaign)
            body, content_type = json.dumps(payload, indent=2, default=str), "application/json"
        else:
            rows = breakdown_rows(results)
            buffer = io.StringIO()
            columns = list(dict.fromkeys(k for row in rows for k in row)) or ["question", "source"]
            writer = csv.DictWriter(buffer, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
            body, content_type = buffer.getvalue(), "text/csv; charset=utf-8"
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-breakdown.{fmt}"'
        return response


class FigureView(AdminView):
    """One results chart as PNG or SVG."""

    content_negotiation_class = AnyAccept

    def get(self, request: Request, campaign_id: int, name: str, fmt: str):
        campaign = self.campaign(campaign_id)
        if name not in FIGURES or fmt not in FORMATS:
            return Response({"detail": f"Unknown figure; use one of {sorted(FIGURES)} as png or svg."}, status=404)
        results = campaign_results(campaign=campaign)
        fig = FIGURES[name][1](results)
        if fig is None:
            return Response({"detail": "Nothing to draw yet for this campaign."}, status=404)
        return figure_response(fig, fmt=fmt, name=f"campaign-{campaign.pk}-{name}")
