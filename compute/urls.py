from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from compute import api
from compute.views import autointerp, dashboards, jobs, registry

app_name = "compute"

router = DefaultRouter()
router.register("jobs", api.JobViewSet, basename="job")
router.register("saes", api.SAEViewSet, basename="sae")
router.register("evaluations", api.EvaluationViewSet, basename="evaluation")
router.register("dashboards", api.DashboardSetViewSet, basename="dashboardset")

urlpatterns = [
    path("", jobs.index, name="index"),
    path("jobs/", jobs.job_list, name="job-list"),
    path("jobs/selfcheck/", jobs.selfcheck_start, name="selfcheck-start"),
    path("jobs/<int:job_id>/", jobs.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/cancel/", jobs.job_cancel_view, name="job-cancel"),
    path("jobs/<int:job_id>/retry/", jobs.job_retry_view, name="job-retry"),
    path("corpora/", registry.corpus_list, name="corpus-list"),
    path("corpora/<int:corpus_id>/", registry.corpus_detail, name="corpus-detail"),
    path("saes/", registry.sae_list, name="sae-list"),
    path("saes/<int:sae_id>/", registry.sae_detail, name="sae-detail"),
    path("saes/<int:sae_id>/evaluate/", registry.sae_evaluate, name="sae-evaluate"),
    path("training/new/", registry.training_new, name="training-new"),
    path("autointerp/", autointerp.autointerp_page, name="autointerp"),
    path("autointerp/export.<str:fmt>", autointerp.autointerp_export, name="autointerp-export"),
    path("saes/<int:sae_id>/dashboards/", dashboards.sae_dashboards, name="sae-dashboards"),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/build/",
        dashboards.dashboard_build_view,
        name="dashboard-build",
    ),
    path("saes/<int:sae_id>/dashboards/<int:corpus_id>/", dashboards.feature_browser, name="feature-browser"),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/export.jsonl",
        dashboards.set_export,
        name="dashboard-set-export",
    ),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>/",
        dashboards.feature_dashboard,
        name="feature-dashboard",
    ),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>.json",
        dashboards.feature_export,
        name="feature-export",
    ),
]

api_urlpatterns = [path("", include(router.urls))]
