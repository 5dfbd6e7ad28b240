"""Pages every signed-in user sees; the labelling pages live in `labelling`, admin pages in `manage`."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from labelsite.selectors.blind import blind_campaigns


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "labelsite/home.html", {"campaigns": blind_campaigns(labeller=request.user)})


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and docker-compose: the web process and its database answer."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
