"""Thin API views: validate input with a serializer, read through selectors, act through services.

Tenant tokens see their own tenant only (other tenants' alerts and silences are 404 everywhere);
platform tokens see every tenant. Scopes: alerts:read for GET, alerts:write for changes.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import clock
from apps.core.auth import TokenPrincipal
from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.core.pagination import NewestFirstCursorPagination
from apps.core.permissions import tenant_filter
from apps.core.scopes import ALERTS_READ, ALERTS_WRITE
from apps.delivery.api import serializers as delivery_s
from apps.tenants.models import Tenant

from .. import selectors, services, silences
from ..models import Alert
from . import serializers as s

SCOPES = {"GET": ALERTS_READ, "POST": ALERTS_WRITE, "DELETE": ALERTS_WRITE}
ERRORS = {400: OpenApiResponse(description="Invalid input; `error.details` names the field"),
          403: OpenApiResponse(description="Token lacks the scope"),
          404: OpenApiResponse(description="No such alert (or another tenant's)")}
CONFLICT = {409: OpenApiResponse(description="Impossible transition; `error.details.state` is the current state")}


def visible_tenants(request) -> list[int] | None:
    principal: TokenPrincipal = request.user
    return None if principal.tenant_id is None else [principal.tenant_id]


class AlertCursorPagination(NewestFirstCursorPagination):
    """Cursor pagination on the ordering the view validated (id breaks ties)."""

    def get_ordering(self, request, queryset, view):
        first = getattr(view, "ordering", None) or self.ordering
        return (first, "-id" if first.startswith("-") else "id")


class AlertListView(GenericAPIView):
    required_scopes = SCOPES
    serializer_class = s.AlertSerializer
    pagination_class = AlertCursorPagination

    @extend_schema(parameters=[s.AlertListQuerySerializer], responses={200: s.AlertSerializer(many=True), **ERRORS},
                   summary="List alerts (filters, search, ordering, cursor pagination)")
    def get(self, request):
        query = s.AlertListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        self.ordering = query.validated_data.get("ordering", "-created_at")
        qs = selectors.alert_list(tenant_ids=visible_tenants(request), filters=query.to_filters())
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.AlertSerializer(page, many=True).data)


class AlertDetailView(APIView):
    required_scopes = SCOPES

    @extend_schema(responses={200: s.AlertDetailSerializer, **ERRORS}, summary="One alert with payload and timeline")
    def get(self, request, alert_id: int):
        alert = selectors.alert_get(alert_id=alert_id, tenant_ids=visible_tenants(request))
        timeline = selectors.alert_timeline(alert=alert)
        return Response(s.AlertDetailSerializer(alert, context={"timeline": timeline}).data)


class AlertTimelineView(APIView):
    required_scopes = SCOPES

    @extend_schema(responses={200: s.TimelineEntrySerializer(many=True), **ERRORS}, summary="An alert's history")
    def get(self, request, alert_id: int):
        alert = selectors.alert_get(alert_id=alert_id, tenant_ids=visible_tenants(request))
        return Response(s.TimelineEntrySerializer(selectors.alert_timeline(alert=alert), many=True).data)


class _AlertAction(APIView):
    """POST /alerts/{id}/<action>: find the visible alert (404), validate, call one service."""

    required_scopes = SCOPES
    input_serializer = s.NoteInSerializer

    def post(self, request, alert_id: int):
        alert = selectors.alert_get(alert_id=alert_id, tenant_ids=visible_tenants(request))
        body = self.input_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = self.act(alert, request.user, body.validated_data)
        fresh = selectors.alert_get(alert_id=result.pk, tenant_ids=None)
        return Response(s.AlertSerializer(fresh).data)

    def act(self, alert: Alert, actor, data: dict) -> Alert:
        raise NotImplementedError


def _action_schema(summary: str, request=s.NoteInSerializer):
    return extend_schema(request=request, responses={200: s.AlertSerializer, **ERRORS, **CONFLICT}, summary=summary)


class AlertAckView(_AlertAction):
    @_action_schema("Acknowledge (OPEN/ESCALATED -> ACKNOWLEDGED)")
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def act(self, alert, actor, data):
        return services.alert_acknowledge(alert_id=alert.pk, actor=actor, note=data["note"])


class AlertResolveView(_AlertAction):
    input_serializer = s.ResolveInSerializer

    @_action_schema("Resolve (any active state -> RESOLVED); also for automation tokens, e.g. a passing "
                    "regression run with its reason and the alert's ticket key", s.ResolveInSerializer)
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def act(self, alert, actor, data):
        # An automation naming a ticket must be resolving the alert it thinks it is (the ticket's
        # comment and closing follow from this resolve).
        if "ticket" in data and data["ticket"] != alert.ticket_key:
            has = f"ticket {alert.ticket_key!r}" if alert.ticket_key else "no ticket"
            raise Conflict(f"ticket {data['ticket']!r} does not match alert {alert.pk}, which has {has}",
                           details={"ticket": [f"alert has {has}"]})
        note = "\n".join(part for part in (data["reason"].strip(), data["note"].strip()) if part)
        return services.alert_resolve(alert_id=alert.pk, actor=actor, note=note)


class AlertUnsuppressView(_AlertAction):
    @_action_schema("Unsuppress (SUPPRESSED -> OPEN, or ACKNOWLEDGED if it was)")
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def act(self, alert, actor, data):
        return services.alert_unsuppress(alert_id=alert.pk, actor=actor, note=data["note"])


class AlertSuppressView(_AlertAction):
    input_serializer = s.SuppressInSerializer

    @_action_schema("Suppress for a duration with a reason", s.SuppressInSerializer)
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def act(self, alert, actor, data):
        return services.alert_suppress(alert_id=alert.pk, actor=actor, duration=data["duration"],
                                       reason=data["reason"])


class AlertAssignView(_AlertAction):
    input_serializer = s.AssignInSerializer

    @_action_schema("Assign to a user (null to unassign)", s.AssignInSerializer)
    def post(self, request, alert_id: int):
        return super().post(request, alert_id)

    def act(self, alert, actor, data):
        user = selectors.user_for_assignment(data["assignee"]) if data["assignee"] else None
        return services.alert_assign(alert_id=alert.pk, actor=actor, assignee=user)


class AlertNotesView(APIView):
    required_scopes = SCOPES

    @extend_schema(request=s.NoteCreateSerializer, responses={201: s.TimelineEntrySerializer, **ERRORS},
                   summary="Add a note (any state; not sent to webhooks)")
    def post(self, request, alert_id: int):
        alert = selectors.alert_get(alert_id=alert_id, tenant_ids=visible_tenants(request))
        body = s.NoteCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        entry = services.alert_add_note(alert_id=alert.pk, actor=request.user, text=body.validated_data["text"])
        return Response(s.TimelineEntrySerializer(entry).data, status=status.HTTP_201_CREATED)


class AlertAckAllView(APIView):
    required_scopes = SCOPES

    @extend_schema(request=s.AckAllInSerializer, responses={200: s.AckAllOutSerializer, **ERRORS},
                   summary="Acknowledge every OPEN/ESCALATED alert matching the filters")
    def post(self, request):
        body = s.AckAllInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        qs = selectors.alert_list(tenant_ids=visible_tenants(request), filters=body.to_filters())
        ids = services.alerts_acknowledge_bulk(alerts=qs, actor=request.user, note=body.validated_data["note"])
        return Response({"acknowledged": len(ids), "ids": ids, "limit": services.BULK_LIMIT})


class StatisticsView(APIView):
    required_scopes = SCOPES

    @extend_schema(parameters=[s.StatisticsQuerySerializer], responses={200: s.StatisticsSerializer, **ERRORS},
                   summary="Alert figures over the last N hours")
    def get(self, request):
        query = s.StatisticsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        tenant_ids = visible_tenants(request)
        slug = query.validated_data.get("tenant")
        if slug:
            wanted = list(Tenant.objects.filter(slug=slug).values_list("pk", flat=True))
            tenant_ids = wanted if tenant_ids is None else [t for t in tenant_ids if t in wanted]
        return Response(selectors.alert_statistics(tenant_ids=tenant_ids, hours=query.validated_data["hours"]))


# --- Silences ------------------------------------------------------------------------------------

def _silence_tenant_id(request, slug: str | None, given: bool) -> int | None:
    """Tenant tokens silence their own tenant only; platform tokens name one or none (= all)."""
    principal: TokenPrincipal = request.user
    if principal.tenant_id is not None:
        if given and slug not in (None, principal.tenant_slug):
            raise ApplicationError(f"no such tenant {slug!r}", details={"tenant": [f"no such tenant {slug!r}"]})
        return principal.tenant_id
    if not slug:
        return None
    tenant_id = Tenant.objects.filter(slug=slug).values_list("pk", flat=True).first()
    if tenant_id is None:
        raise ApplicationError(f"no such tenant {slug!r}", details={"tenant": [f"no such tenant {slug!r}"]})
    return tenant_id


class SilenceListView(GenericAPIView):
    required_scopes = SCOPES
    serializer_class = s.SilenceSerializer
    pagination_class = NewestFirstCursorPagination

    @extend_schema(responses={200: s.SilenceSerializer(many=True), **ERRORS}, summary="List silences",
                   parameters=[OpenApiParameter("status", str, enum=["active", "pending", "expired"])])
    def get(self, request):
        status_filter = request.query_params.get("status")
        if status_filter not in (None, "active", "pending", "expired"):
            raise ApplicationError("status must be active, pending or expired", details={"status": ["invalid"]})
        qs = selectors.silence_list(tenant_ids=visible_tenants(request), status=status_filter)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.SilenceSerializer(page, many=True, context={"now": clock.now()}).data)

    @extend_schema(request=s.SilenceInSerializer, responses={201: s.SilenceSerializer, **ERRORS},
                   summary="Create a silence (matching new alerts are created SUPPRESSED)")
    def post(self, request):
        body = s.SilenceInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        starts_at = d.get("starts_at") or clock.now()
        silence = silences.silence_create(
            actor=request.user, tenant_id=_silence_tenant_id(request, d.get("tenant"), "tenant" in d),
            matchers=d["matchers"], starts_at=starts_at, ends_at=d.get("ends_at") or starts_at + d["duration"],
            reason=d["reason"])
        silence = selectors.silence_get(silence_id=silence.pk, tenant_ids=None)
        return Response(s.SilenceSerializer(silence, context={"now": clock.now()}).data, status=status.HTTP_201_CREATED)


class SilenceDetailView(APIView):
    required_scopes = SCOPES

    @extend_schema(responses={200: s.SilenceSerializer, **ERRORS}, summary="One silence")
    def get(self, request, silence_id: int):
        silence = selectors.silence_get(silence_id=silence_id, tenant_ids=visible_tenants(request))
        return Response(s.SilenceSerializer(silence, context={"now": clock.now()}).data)

    @extend_schema(responses={200: s.SilenceSerializer, **ERRORS, **CONFLICT},
                   summary="Expire a silence now (its suppressed alerts are unsuppressed)")
    def delete(self, request, silence_id: int):
        silence = selectors.silence_get(silence_id=silence_id, tenant_ids=visible_tenants(request), writable=True)
        silences.silence_expire(silence_id=silence.pk, actor=request.user)
        silence = selectors.silence_get(silence_id=silence.pk, tenant_ids=None)
        return Response(s.SilenceSerializer(silence, context={"now": clock.now()}).data)


class SilencePreviewView(APIView):
    required_scopes = {"POST": ALERTS_READ}

    @extend_schema(request=s.SilencePreviewInSerializer, responses={200: s.AlertSerializer(many=True), **ERRORS},
                   summary="Active alerts a draft silence would match (first 100)")
    def post(self, request):
        body = s.SilencePreviewInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        d = body.validated_data
        tenant_id = _silence_tenant_id(request, d.get("tenant"), "tenant" in d)
        visible = selectors.alerts_visible(tenant_ids=visible_tenants(request))
        alerts = silences.silence_preview(tenant_id=tenant_id, matchers=d["matchers"], alerts=visible)
        return Response(s.AlertSerializer(alerts, many=True).data)


class FallbackView(APIView):
    required_scopes = {"*": ALERTS_WRITE}
    channel = "email"

    @extend_schema(tags=["alerts"], request=delivery_s.FallbackRequestSerializer,
                   responses={200: delivery_s.DeliverySerializer, **ERRORS}, summary="Send the alert by this fallback channel now (operator's manual notification)")
    def post(self, request):
        ser = delivery_s.FallbackRequestSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        qs = tenant_filter(request, Alert.objects.select_related("tenant", "plugin"))
        alert = qs.filter(pk=ser.validated_data["alert_id"]).first()
        if alert is None:
            raise NotFound(f"no alert {ser.validated_data['alert_id']}")
        delivery = services.alert_send_fallback(alert=alert, channel=self.channel, actor=request.user)
        return Response(delivery_s.DeliverySerializer(delivery).data)
