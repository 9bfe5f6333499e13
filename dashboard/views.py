from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.shortcuts import render
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dashboard.metrics import REGISTRY


def metrics_view(request):
    """Prometheus text format. No authentication, no secrets."""
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


@staff_member_required
def index(request):
    return render(request, "dashboard/index.html", {})
