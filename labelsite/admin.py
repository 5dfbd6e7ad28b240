"""Django admin for the labelling records (the campaign pages under /manage/ are the main admin UI)."""

from __future__ import annotations

from django.contrib import admin

from config.admin import ReadOnlyAdmin
from labelsite.models import Assignment, Campaign, CampaignSAE, Item, Judgment, JudgmentRevision


class CampaignSAEInline(admin.TabularInline):
    model = CampaignSAE
    extra = 0
    raw_id_fields = ["sae"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "overlap", "panel_order", "hide_mapping_until_closed", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    filter_horizontal = ["labellers"]
    readonly_fields = ["build_jobs", "opened_at", "closed_at", "created_at", "created_by"]
    inlines = [CampaignSAEInline]


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    list_display = ["code", "campaign", "source", "feature_index", "judgment_count", "slots_taken", "overlap"]
    list_filter = ["campaign"]
    search_fields = ["code"]
    readonly_fields = ["code", "shuffle_key", "slots_taken", "judgment_count"]
    list_select_related = ["campaign", "source__sae"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["item", "labeller", "status", "reason", "expires_at"]
    list_filter = ["status", "campaign"]
    raw_id_fields = ["item"]


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = ["item", "labeller", "time_spent_ms", "revisions", "updated_at"]
    list_filter = ["campaign"]
    raw_id_fields = ["item"]


@admin.register(JudgmentRevision)
class JudgmentRevisionAdmin(ReadOnlyAdmin):
    list_display = ["judgment", "version", "saved_at", "replaced_at"]
    raw_id_fields = ["judgment"]
