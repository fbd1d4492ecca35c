"""The operator console, mounted at "/" by alertcenter.urls."""
from django.urls import path

from .views import actions, alerts, audit, auth, bulk, channels, dashboard, export, remediation, reports, silences
from .views.heartbeats import heartbeat_list

app_name = "console"

urlpatterns = [
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("", alerts.alert_list_page, name="alert-list"),
    path("alerts/rows", alerts.alert_rows, name="alert-rows"),
    path("alerts/options/<str:kind>", alerts.filter_options, name="alert-filter-options"),
    path("alerts/bulk-ack", actions.bulk_acknowledge, name="alert-bulk-ack"),
    path("alerts/bulk-resolve", bulk.bulk_resolve, name="alert-bulk-resolve"),
    path("alerts/bulk-suppress", bulk.bulk_suppress, name="alert-bulk-suppress"),
    path("alerts/bulk-assign", bulk.bulk_assign, name="alert-bulk-assign"),
    path("alerts/export.csv", export.alert_export, name="alert-export"),
    path("alerts/<int:alert_id>", alerts.alert_detail, name="alert-detail"),
    path("alerts/<int:alert_id>/ack", actions.acknowledge, name="alert-ack"),
    path("alerts/<int:alert_id>/resolve", actions.resolve, name="alert-resolve"),
    path("alerts/<int:alert_id>/assign", actions.assign, name="alert-assign"),
    path("alerts/<int:alert_id>/note", actions.add_note, name="alert-note"),
    path("alerts/<int:alert_id>/suppress", actions.suppress, name="alert-suppress"),
    path("alerts/<int:alert_id>/unsuppress", actions.unsuppress, name="alert-unsuppress"),
    path("alerts/<int:alert_id>/fallback", actions.fallback, name="alert-fallback"),
    path("alerts/<int:alert_id>/report", reports.diagnostic_report_page, name="alert-report"),
    path("alerts/<int:alert_id>/ticket", remediation.create_ticket, name="alert-ticket"),
    path("alerts/<int:alert_id>/actions/<slug:name>", remediation.run_action, name="alert-action-run"),
    path("dashboard", dashboard.dashboard, name="dashboard"),
    path("health-map", reports.health_map_page, name="health-map"),
    path("audit", audit.audit_log, name="audit"),
    path("audit/export.csv", audit.audit_export, name="audit-export"),
    path("silences", silences.silence_page, name="silences"),
    path("silences/new", silences.silence_new, name="silence-new"),
    path("silences/<int:silence_id>/expire", silences.silence_end, name="silence-expire"),
    path("channels", channels.channel_list, name="channels"),
    path("channels/<int:channel_id>/test", channels.channel_test, name="channel-test"),
    path("policies", channels.policy_list, name="policies"),
    path("heartbeats", heartbeat_list, name="heartbeats"),
]
