from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from compute.urls import api_urlpatterns as compute_api
from config.security import ThrottledAuthenticationForm
from labelsite import campaign_urls, views


def favicon(request: HttpRequest) -> HttpResponsePermanentRedirect:
    """Pages without our `<link rel="icon">` (Django's admin, the API docs) make browsers ask for /favicon.ico."""
    return HttpResponsePermanentRedirect(static("config/favicon.svg"))


urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", favicon),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("compute/", include("compute.urls")),
    path("api/compute/", include((compute_api, "compute-api"))),
    path("label/", include(campaign_urls.label_patterns)),
    path("manage/", include(campaign_urls.manage_patterns)),
    path("api/label/", include(campaign_urls.api_label_patterns)),
    path("api/manage/", include(campaign_urls.api_manage_patterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
