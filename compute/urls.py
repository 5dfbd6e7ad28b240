from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from compute import api, dashboard_views, views

app_name = "compute"

router = DefaultRouter()
router.register("jobs", api.JobViewSet, basename="job")

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/selfcheck/", views.selfcheck_start, name="selfcheck-start"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel_view, name="job-cancel"),
    path("jobs/<int:job_id>/retry/", views.job_retry_view, name="job-retry"),
    path("corpora/", views.corpus_list, name="corpus-list"),
    path("corpora/<int:corpus_id>/", views.corpus_detail, name="corpus-detail"),
    path("saes/", views.sae_list, name="sae-list"),
    path("saes/<int:sae_id>/", views.sae_detail, name="sae-detail"),
    path("saes/<int:sae_id>/evaluate/", views.sae_evaluate, name="sae-evaluate"),
    path("training/new/", views.training_new, name="training-new"),
    path("saes/<int:sae_id>/dashboards/", dashboard_views.sae_dashboards, name="sae-dashboards"),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/build/",
        dashboard_views.dashboard_build_view,
        name="dashboard-build",
    ),
    path("saes/<int:sae_id>/dashboards/<int:corpus_id>/", dashboard_views.feature_browser, name="feature-browser"),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/export.jsonl",
        dashboard_views.set_export,
        name="dashboard-set-export",
    ),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>/",
        dashboard_views.feature_dashboard,
        name="feature-dashboard",
    ),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>.json",
        dashboard_views.feature_export,
        name="feature-export",
    ),
]

api_urlpatterns = [path("", include(router.urls))]
