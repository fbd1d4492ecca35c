from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .health import run_checks
from .permissions import ANY_SCOPE


class HealthView(APIView):
    """Liveness of the pieces an alert needs: database, broker and a worker that consumes."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "checks": serializers.DictField()}),
            503: inline_serializer("HealthDown", {"status": serializers.CharField(), "checks": serializers.DictField()}),
        }
    )
    def get(self, request):
        checks = run_checks()
        healthy = all(c["ok"] for c in checks.values())
        return Response({"status": "ok" if healthy else "down", "checks": checks}, status=200 if healthy else 503)


class WhoAmIView(APIView):
    """What the presented token is: its name, tenant and scopes (for checking a shipper's setup)."""

    required_scope = ANY_SCOPE

    @extend_schema(
        responses=inline_serializer(
            "WhoAmI",
            {"token": serializers.CharField(), "tenant": serializers.CharField(allow_null=True),
             "scopes": serializers.ListField(child=serializers.CharField())},
        )
    )
    def get(self, request):
        principal = request.user
        return Response({"token": principal.name, "tenant": principal.tenant_slug, "scopes": sorted(principal.scopes)})
