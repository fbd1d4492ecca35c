"""API: the health map and diagnostic report links (scope alerts:read; a tenant token sees its tenant).

``POST /api/v1/alerts/{id}/report`` answers signed download links, not the report: the links work
without a token (they are the credential), so they can be handed to a browser, curl or a ticket.
"""
from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.alerts.selectors import alert_get
from apps.core import clock
from apps.core.client_ip import client_ip
from apps.core.errors import NotFound
from apps.core.scopes import ALERTS_READ
from apps.tenants.models import Tenant

from .healthmap import health_map
from .services import issue_report_links

# Asking for report links reads the alert, so POST needs alerts:read only.
_READ_SCOPES = {"GET": ALERTS_READ}
_LINK_SCOPES = {"POST": ALERTS_READ}
_ERRORS = {403: OpenApiResponse(description="Token lacks alerts:read"),
           404: OpenApiResponse(description="No such alert or tenant (or another tenant's)")}

_CELL_FIELDS = {
    "tenant": serializers.CharField(), "plugin": serializers.CharField(allow_null=True),
    "worst_severity": serializers.CharField(allow_null=True), "active": serializers.IntegerField(),
    "by_state": serializers.DictField(child=serializers.IntegerField()),
    "last_event_at": serializers.DateTimeField(allow_null=True), "stale": serializers.BooleanField(),
    "silence": serializers.ChoiceField(choices=["silenced", "partial", "none"]),
    "silenced_until": serializers.DateTimeField(allow_null=True),
}
_Map = inline_serializer("HealthMap", {"generated_at": serializers.DateTimeField(),
                                       "stale_after_seconds": serializers.IntegerField(),
                                       "plugins": inline_serializer("HealthMapCell", _CELL_FIELDS, many=True)})
_Links = inline_serializer("DiagnosticReportLinks", {"ndjson_url": serializers.URLField(),
                                                     "zip_url": serializers.URLField(),
                                                     "expires_at": serializers.DateTimeField()})


def _visible_tenants(request) -> list[int] | None:
    tenant_id = request.user.tenant_id
    return None if tenant_id is None else [tenant_id]


class HealthMapView(APIView):
    required_scopes = _READ_SCOPES

    @extend_schema(parameters=[OpenApiParameter("tenant", str, description="Only this tenant (slug)")],
                   responses={200: _Map, **_ERRORS}, summary="Health map: per tenant and plugin")
    def get(self, request):
        tenant_ids = _visible_tenants(request)
        slug = request.query_params.get("tenant") or None
        if slug is not None:
            tenants = Tenant.objects.filter(slug=slug)
            if tenant_ids is not None:
                tenants = tenants.filter(pk__in=tenant_ids)
            if not tenants.exists():
                raise NotFound(f"tenant {slug!r} not found", details={"tenant": [f"no visible tenant {slug!r}"]})
        now = clock.now()
        cells = health_map(tenant_ids=tenant_ids, tenant_slug=slug, now=now)
        return Response({"generated_at": now.isoformat(), "stale_after_seconds": settings.HEALTH_MAP_STALE_SECONDS,
                         "plugins": [cell.as_dict() for cell in cells]})


class ReportLinkView(APIView):
    required_scopes = _LINK_SCOPES

    @extend_schema(request=None, responses={201: _Links, **_ERRORS},
                   summary="Signed, expiring download links for an alert's diagnostic report")
    def post(self, request, alert_id: int):
        alert = alert_get(alert_id=alert_id, tenant_ids=_visible_tenants(request))
        issued = issue_report_links(
            alert=alert, actor=request.user, ip=client_ip(request),
            url_for=lambda name, token: request.build_absolute_uri(reverse(f"reports:{name}", args=[token])))
        return Response(issued.as_dict(), status=status.HTTP_201_CREATED)
