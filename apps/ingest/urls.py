from django.urls import path

from .heartbeats.views import HeartbeatListView, HeartbeatView
from .integrations.views import AlertmanagerView, EventsView, GrafanaView
from .views import LogIntakeView

urlpatterns = [
    path("logs", LogIntakeView.as_view(), name="logs"),
    path("integrations/alertmanager", AlertmanagerView.as_view(), name="integrations-alertmanager"),
    path("integrations/grafana", GrafanaView.as_view(), name="integrations-grafana"),
    path("events", EventsView.as_view(), name="events"),
    path("heartbeats", HeartbeatListView.as_view(), name="heartbeats"),
    path("heartbeats/<str:name>", HeartbeatView.as_view(), name="heartbeat"),
]
