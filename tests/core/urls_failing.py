"""The real URLconf (and the error handlers it names) plus views that fail unexpectedly."""
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from alertcenter.urls import handler404, handler500, urlpatterns as site  # noqa: F401  (the handlers under test)


def broken_page(request):
    raise RuntimeError("a bug")


class BrokenApiView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        raise RuntimeError("a bug with a secret in it")


urlpatterns = [
    path("api/v1/broken", BrokenApiView.as_view()),
    path("api/v1/broken-plain", broken_page),
    path("broken-page", broken_page),
    *site,
]
