"""Alerts, silences and statistics under /api/v1/ (included from alertcenter.urls)."""
from django.urls import path

from .api import views

urlpatterns = [
    path("alerts", views.AlertListView.as_view(), name="alert-list"),
    path("alerts/ack-all", views.AlertAckAllView.as_view(), name="alert-ack-all"),
    path("alerts/fallback/email", views.FallbackView.as_view(channel="email"), name="alert-fallback-email"),
    path("alerts/fallback/sms", views.FallbackView.as_view(channel="sms"), name="alert-fallback-sms"),
    path("alerts/<int:alert_id>", views.AlertDetailView.as_view(), name="alert-detail"),
    path("alerts/<int:alert_id>/timeline", views.AlertTimelineView.as_view(), name="alert-timeline"),
    path("alerts/<int:alert_id>/ack", views.AlertAckView.as_view(), name="alert-ack"),
    path("alerts/<int:alert_id>/resolve", views.AlertResolveView.as_view(), name="alert-resolve"),
    path("alerts/<int:alert_id>/assign", views.AlertAssignView.as_view(), name="alert-assign"),
    path("alerts/<int:alert_id>/notes", views.AlertNotesView.as_view(), name="alert-notes"),
    path("alerts/<int:alert_id>/suppress", views.AlertSuppressView.as_view(), name="alert-suppress"),
    path("alerts/<int:alert_id>/unsuppress", views.AlertUnsuppressView.as_view(), name="alert-unsuppress"),
    path("silences", views.SilenceListView.as_view(), name="silence-list"),
    path("silences/preview", views.SilencePreviewView.as_view(), name="silence-preview"),
    path("silences/<int:silence_id>", views.SilenceDetailView.as_view(), name="silence-detail"),
    path("statistics", views.StatisticsView.as_view(), name="statistics"),
]
