from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from apps.core.views import HealthView, WhoAmIView

api_v1 = [
    path("health", HealthView.as_view(), name="health"),
    path("whoami", WhoAmIView.as_view(), name="whoami"),
    path("", include("apps.ingest.urls")),
    path("", include("apps.delivery.api.urls")),
    path("", include("apps.alerts.urls")),
    path("", include("apps.rules.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),
]
