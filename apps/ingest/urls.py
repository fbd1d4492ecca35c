from django.urls import path

from .views import LogIntakeView

urlpatterns = [
    path("logs", LogIntakeView.as_view(), name="logs"),
]
