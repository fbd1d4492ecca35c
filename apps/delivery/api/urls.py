from django.urls import path

from . import views

urlpatterns = [
    path("webhooks", views.WebhookListView.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>", views.WebhookDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<int:pk>/rotate-secret", views.WebhookRotateView.as_view(), name="webhook-rotate"),
    path("webhooks/<int:pk>/test", views.WebhookTestView.as_view(), name="webhook-test"),
    path("webhooks/<int:pk>/deliveries", views.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
]
