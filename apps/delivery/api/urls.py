from django.urls import path

from . import channel_views, views

urlpatterns = [
    path("webhooks", views.WebhookListView.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>", views.WebhookDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<int:pk>/rotate-secret", views.WebhookRotateView.as_view(), name="webhook-rotate"),
    path("webhooks/<int:pk>/test", views.WebhookTestView.as_view(), name="webhook-test"),
    path("webhooks/<int:pk>/deliveries", views.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    path("channels", channel_views.ChannelListView.as_view(), name="channel-list"),
    path("channels/<int:pk>", channel_views.ChannelDetailView.as_view(), name="channel-detail"),
    path("channels/<int:pk>/test", channel_views.ChannelTestView.as_view(), name="channel-test"),
    path("policies", channel_views.PolicyListView.as_view(), name="policy-list"),
    path("policies/reorder", channel_views.PolicyReorderView.as_view(), name="policy-reorder"),
    path("policies/preview", channel_views.PolicyPreviewView.as_view(), name="policy-preview"),
    path("policies/export", channel_views.PolicyExportView.as_view(), name="policy-export"),
    path("policies/import", channel_views.PolicyImportView.as_view(), name="policy-import"),
    path("policies/<int:pk>", channel_views.PolicyDetailView.as_view(), name="policy-detail"),
]
