"""Test-only routes: a view per scope rule, to test the permission class itself."""
from django.urls import path
from rest_framework.generics import RetrieveAPIView
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework import serializers

from apps.core.permissions import tenant_filter
from apps.tenants.models import Plugin


class NeedsAlertsRead(APIView):
    required_scopes = {"GET": "alerts:read", "POST": "alerts:write"}

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})


class DeclaresNothing(APIView):
    def get(self, request):
        return Response({"ok": True})


class PluginSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plugin
        fields = ["id", "slug"]


class PluginDetail(RetrieveAPIView):
    required_scope = "alerts:read"
    serializer_class = PluginSerializer

    def get_queryset(self):
        return tenant_filter(self.request, Plugin.objects.all())


urlpatterns = [
    path("scoped", NeedsAlertsRead.as_view()),
    path("undeclared", DeclaresNothing.as_view()),
    path("plugins/<int:pk>", PluginDetail.as_view()),
]
