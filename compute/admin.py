from __future__ import annotations

from django.contrib import admin

from compute.forms import CorpusAdminForm
from compute.models import SAE, Corpus, DashboardSet, Job, LanguageModel, LLMCall
from config.admin import ReadOnlyAdmin


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "progress", "message", "created_at"]
    list_filter = ["kind", "status"]


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "location", "default_hook"]


@admin.register(Corpus)
class CorpusAdmin(admin.ModelAdmin):
    form = CorpusAdminForm  # uploads: a .txt/.jsonl/.parquet/.csv file goes to artifact storage
    list_display = ["name", "kind", "source", "location"]
    list_filter = ["kind", "source"]
    readonly_fields = ["token_counts"]


@admin.register(SAE)
class SAEAdmin(admin.ModelAdmin):
    list_display = ["name", "method", "architecture", "status", "hook_name", "d_sae"]
    list_filter = ["method", "status"]


@admin.register(DashboardSet)
class DashboardSetAdmin(admin.ModelAdmin):
    list_display = ["id", "sae", "corpus", "status", "n_tokens", "n_features", "n_dead", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in DashboardSet._meta.fields]


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = ["id", "purpose", "model", "latency_s", "error", "created_at"]
    list_filter = ["purpose", "model"]
