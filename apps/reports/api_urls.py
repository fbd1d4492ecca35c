"""The health map and report links under /api/v1/ (included from alertcenter.urls)."""
from django.urls import path

from . import api

urlpatterns = [
    path("health/map", api.HealthMapView.as_view(), name="health-map"),
    path("alerts/<int:alert_id>/report", api.ReportLinkView.as_view(), name="alert-report"),
]
