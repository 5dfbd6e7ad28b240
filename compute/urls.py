from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from compute import api
from compute.views import autointerp, dashboards, decomposition, jobs, registry, studies

app_name = "compute"

router = DefaultRouter()
router.register("jobs", api.JobViewSet, basename="job")
router.register("saes", api.SAEViewSet, basename="sae")
router.register("evaluations", api.EvaluationViewSet, basename="evaluation")
router.register("dashboards", api.DashboardSetViewSet, basename="dashboardset")
router.register("studies", api.StudyViewSet, basename="study")

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
    path("studies/<int:study_id>/autointerp/", autointerp.study_autointerp, name="study-autointerp"),
    path("studies/", studies.study_list, name="study-list"),
    path("studies/<int:study_id>/", studies.study_detail, name="study-detail"),
    path("studies/<int:study_id>/evaluate/", studies.study_evaluate, name="study-evaluate"),
    path(
        "studies/<int:study_id>/evaluations/<int:evaluation_id>/export.<str:fmt>",
        studies.study_export,
        name="study-export",
    ),
    path(
        "studies/<int:study_id>/evaluations/<int:evaluation_id>/<slug:name>.<str:fmt>",
        studies.study_figure_download,
        name="study-figure",
    ),
    path("jobs/<int:job_id>/study/", studies.study_from_job, name="study-from-job"),
    path("saes/<int:sae_id>/dashboards/", dashboards.sae_dashboards, name="sae-dashboards"),
    path(
        "saes/<int:sae_id>/dashboards/build/",
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
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>/decompositions/",
        decomposition.feature_decompositions,
        name="feature-decompositions",
    ),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>/probe/",
        decomposition.feature_probe,
        name="feature-probe",
    ),
    path("decompositions/", decomposition.decomposition_list, name="decomposition-list"),
    path("decompositions/<int:decomposition_id>/", decomposition.decomposition_detail, name="decomposition-detail"),
    path(
        "decompositions/<int:decomposition_id>/measure/",
        decomposition.decomposition_measure_view,
        name="decomposition-measure",
    ),
    path(
        "decompositions/<int:decomposition_id>/figure.<str:fmt>",
        decomposition.decomposition_figure_download,
        name="decomposition-figure",
    ),
    path(
        "saes/<int:sae_id>/dashboards/<int:corpus_id>/features/<int:feature_index>.json",
        dashboards.feature_export,
        name="feature-export",
    ),
]

api_urlpatterns = [path("", include(router.urls))]
