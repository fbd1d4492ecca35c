"""Signed report downloads, mounted at /reports/ by alertcenter.urls (outside /api/: no token)."""
from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("<str:token>/lines.ndjson", views.download_ndjson, name="download-ndjson"),
    path("<str:token>/report.zip", views.download_zip, name="download-zip"),
]
