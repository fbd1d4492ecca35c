"""Rules under /api/v1/ (included from alertcenter.urls). Fixed paths come before ``<key>``;
the services refuse rule ids equal to them."""
from django.urls import path

from .api import views
from .api.metrics_views import MetricsIntakeView

urlpatterns = [
    path("rules", views.RuleListView.as_view(), name="rule-list"),
    path("rules/import", views.RuleImportView.as_view(), name="rule-import"),
    path("rules/export", views.RuleExportView.as_view(), name="rule-export"),
    path("rules/test", views.RuleTestView.as_view(), name="rule-test"),
    path("rules/<str:key>", views.RuleDetailView.as_view(), name="rule-detail"),
    path("rules/<str:key>/revisions", views.RuleRevisionsView.as_view(), name="rule-revisions"),
    path("rules/<str:key>/overrides", views.RuleOverrideView.as_view(), name="rule-overrides"),
    path("metrics", MetricsIntakeView.as_view(), name="metrics-intake"),
]
