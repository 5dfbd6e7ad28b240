"""URLs of the labelling product: labeller pages (/label/), admin pages (/manage/) and their APIs."""

from __future__ import annotations

from django.urls import path

from labelsite import api, api_results
from labelsite.views import autointerp, judge, labelling, manage

label_patterns = (
    [
        path("", labelling.label_index, name="index"),
        path("c/<int:campaign_id>/", labelling.campaign_page, name="campaign"),
        path("c/<int:campaign_id>/next/", labelling.next_item, name="next"),
        path("c/<int:campaign_id>/mine/", labelling.my_judgments, name="mine"),
        path("i/<str:code>/", labelling.item_page, name="item"),
        path("i/<str:code>/skip/", labelling.skip_item, name="skip"),
        path("i/<str:code>/unskip/", labelling.unskip_item, name="unskip"),
        path("i/<str:code>/probe/", labelling.item_probe, name="probe"),
    ],
    "label",
)

manage_patterns = (
    [
        path("campaigns/", manage.campaign_list, name="campaign-list"),
        path("campaigns/new/", manage.campaign_new, name="campaign-new"),
        path("campaigns/guidelines-preview/", manage.guidelines_preview, name="guidelines-preview"),
        path("campaigns/plan/", judge.campaign_plan_preview, name="campaign-plan"),
        path("campaigns/<int:campaign_id>/", manage.campaign_detail, name="campaign"),
        path("campaigns/<int:campaign_id>/open/", manage.campaign_open_view, name="campaign-open"),
        path("campaigns/<int:campaign_id>/close/", manage.campaign_close_view, name="campaign-close"),
        path("campaigns/<int:campaign_id>/audit/", manage.campaign_audit_view, name="campaign-audit"),
        path("campaigns/<int:campaign_id>/reopen/", manage.campaign_reopen_view, name="campaign-reopen"),
        path("campaigns/<int:campaign_id>/reassign/", manage.campaign_reassign_view, name="campaign-reassign"),
        path("campaigns/<int:campaign_id>/results/", manage.campaign_results_page, name="campaign-results"),
        path("campaigns/<int:campaign_id>/judge/", judge.campaign_judge_start_view, name="campaign-judge-start"),
        path(
            "campaigns/<int:campaign_id>/autointerp/", autointerp.campaign_autointerp_page, name="campaign-autointerp"
        ),
        path(
            "campaigns/<int:campaign_id>/autointerp/start/",
            autointerp.campaign_autointerp_start_view,
            name="campaign-autointerp-start",
        ),
        path(
            "campaigns/<int:campaign_id>/autointerp.<str:fmt>",
            autointerp.campaign_autointerp_export,
            name="campaign-autointerp-export",
        ),
    ],
    "manage",
)

api_label_patterns = (
    [
        path("campaigns/", api.label_campaigns, name="campaigns"),
        path("campaigns/<int:campaign_id>/", api.label_campaign, name="campaign"),
        path("campaigns/<int:campaign_id>/next/", api.label_next, name="next"),
        path("campaigns/<int:campaign_id>/judgments/", api.label_judgments, name="judgments"),
        path("items/<str:code>/", api.label_item, name="item"),
        path("items/<str:code>/judgment/", api.label_judge, name="judge"),
        path("items/<str:code>/skip/", api.label_skip, name="skip"),
    ],
    "label-api",
)

api_manage_patterns = (
    [
        path("campaigns/", api.manage_campaigns, name="campaigns"),
        path("campaigns/<int:campaign_id>/", api.manage_campaign, name="campaign"),
        path("campaigns/<int:campaign_id>/open/", api.manage_open, name="open"),
        path("campaigns/<int:campaign_id>/close/", api.manage_close, name="close"),
        path("campaigns/<int:campaign_id>/audit/", api.manage_audit, name="audit"),
        path("campaigns/<int:campaign_id>/reopen/", api.manage_reopen, name="reopen"),
        path("campaigns/<int:campaign_id>/reassign/", api.manage_reassign, name="reassign"),
        path("campaigns/<int:campaign_id>/items/", api.manage_items, name="items"),
        path("campaigns/<int:campaign_id>/judgments/", api_results.JudgmentListView.as_view(), name="judgments"),
        path("campaigns/<int:campaign_id>/results/", api_results.ResultsView.as_view(), name="results"),
        path("campaigns/<int:campaign_id>/judge/", api_results.JudgeView.as_view(), name="judge"),
        path(
            "campaigns/<int:campaign_id>/judgments.<str:fmt>", api_results.ExportView.as_view(), name="judgments-export"
        ),
        path("campaigns/<int:campaign_id>/breakdown.<str:fmt>", api_results.BreakdownView.as_view(), name="breakdown"),
        path(
            "campaigns/<int:campaign_id>/figures/<str:name>.<str:fmt>", api_results.FigureView.as_view(), name="figure"
        ),
    ],
    "manage-api",
)
