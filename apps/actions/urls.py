"""Tickets and remediation under /api/v1/ (included from alertcenter.urls)."""
from django.urls import path

from .api import views

urlpatterns = [
    path("ticket-bridges", views.BridgeListView.as_view(), name="ticket-bridge-list"),
    path("ticket-bridges/<int:pk>", views.BridgeDetailView.as_view(), name="ticket-bridge-detail"),
    path("actions", views.ActionListView.as_view(), name="action-list"),
    path("actions/<int:pk>", views.ActionDetailView.as_view(), name="action-detail"),
    path("alerts/<int:alert_id>/ticket", views.AlertTicketView.as_view(), name="alert-ticket"),
    path("alerts/<int:alert_id>/actions/<slug:name>", views.AlertActionRunView.as_view(), name="alert-action-run"),
    path("alerts/<int:alert_id>/action-runs", views.AlertActionRunsView.as_view(), name="alert-action-runs"),
]
