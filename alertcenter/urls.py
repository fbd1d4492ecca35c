from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from apps.core.errors import api_not_found
from apps.core.views import HealthView, WhoAmIView
from apps.ops.metrics import metrics_view
from apps.stream.api.views import stream as stream_view

api_v1 = [
    path("health", HealthView.as_view(), name="health"),
    path("whoami", WhoAmIView.as_view(), name="whoami"),
    # Server-sent events; served by the ASGI `stream` process (the sync web workers answer 503).
    path("stream", stream_view, name="stream"),
    path("", include("apps.ingest.urls")),
    path("", include("apps.delivery.api.urls")),
    path("", include("apps.alerts.urls")),
    path("", include("apps.rules.urls")),
    path("", include("apps.actions.urls")),
    path("", include("apps.reports.api_urls")),
    # Last: an unmatched /api/v1/ URL is a JSON 404 under DEBUG too (handler404 is not called there).
    re_path(r"", api_not_found),
]

# An unmatched /api/ URL, or an unexpected exception under /api/, answers the JSON error body like
# every other API error; the console keeps Django's pages.
handler404 = "apps.core.errors.api_aware_404"
handler500 = "apps.core.errors.api_aware_500"

urlpatterns = [
    path("api/v1/", include(api_v1)),
    # The prefix alone: APPEND_SLASH would redirect it to the catch-all above (a POST under DEBUG
    # raises instead), so it answers the same JSON 404 itself.
    path("api/v1", api_not_found),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    # Request/DB metrics of every web worker (multiprocess mode) plus the database-derived
    # product metrics; replaces django_prometheus.urls (apps.ops.metrics).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    # Signed diagnostic report downloads: the link is the credential (apps.reports.links).
    path("reports/", include("apps.reports.urls")),
    path("", include("apps.console.urls")),
]
