from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from compute import api, views

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
]

api_urlpatterns = [path("", include(router.urls))]
