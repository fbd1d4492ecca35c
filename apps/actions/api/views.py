"""Tickets and remediation API: bridges and actions (CRUD, scopes actions:read / actions:write),
creating an alert's ticket and running an action on an alert (alerts:write).

Tenant tokens see their own tenant only: another tenant's alert, bridge or action is 404. Platform
tokens see every tenant and name the tenant when creating a bridge or an action.
"""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.alerts.models import Alert
from apps.core.errors import ApplicationError, NotFound
from apps.core.permissions import tenant_filter
from apps.core.scopes import ACTIONS_READ, ACTIONS_WRITE, ALERTS_READ, ALERTS_WRITE
from apps.tenants.selectors import tenant_of_request

from .. import config, remediation, tickets
from ..models import ActionRun, RemediationAction, Ticket, TicketBridge
from . import serializers as s

MANAGE = {"GET": ACTIONS_READ, "POST": ACTIONS_WRITE, "PATCH": ACTIONS_WRITE, "DELETE": ACTIONS_WRITE}
ERRORS = {400: OpenApiResponse(description="Invalid input"), 403: OpenApiResponse(description="Token lacks the scope"),
          404: OpenApiResponse(description="Not found (or another tenant's)"),
          409: OpenApiResponse(description="Conflict; the message says what is missing"),
          422: OpenApiResponse(description="Refused (unsafe URL, bad template, severity not allowed)")}


def _get(request, queryset, what: str, **lookup):
    found = tenant_filter(request, queryset).filter(**lookup).first()
    if found is None:
        raise NotFound(f"no {what} {next(iter(lookup.values()))}")
    return found


def _alert(request, alert_id: int) -> Alert:
    return _get(request, Alert.objects.select_related("tenant"), "alert", pk=alert_id)


class BridgeListView(APIView):
    required_scopes = MANAGE

    @extend_schema(tags=["tickets"], responses={200: s.TicketBridgeSerializer(many=True), **ERRORS},
                   summary="List ticket bridges (tokens are never shown)")
    def get(self, request):
        qs = tenant_filter(request, TicketBridge.objects.select_related("tenant").order_by("pk"))
        return Response(s.TicketBridgeSerializer(qs, many=True).data)

    @extend_schema(tags=["tickets"], request=s.TicketBridgeCreateSerializer,
                   responses={201: s.TicketBridgeSerializer, **ERRORS}, summary="Create the tenant's ticket bridge")
    def post(self, request):
        body = s.TicketBridgeCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        tenant = tenant_of_request(request.user, data.pop("tenant", None))
        bridge = config.bridge_save(tenant=tenant, actor=request.user, data=data)
        return Response(s.TicketBridgeSerializer(bridge).data, status=status.HTTP_201_CREATED)


class BridgeDetailView(APIView):
    required_scopes = MANAGE

    @extend_schema(tags=["tickets"], responses={200: s.TicketBridgeSerializer, **ERRORS}, summary="One ticket bridge")
    def get(self, request, pk: int):
        return Response(s.TicketBridgeSerializer(_get(request, TicketBridge.objects, "ticket bridge", pk=pk)).data)

    @extend_schema(tags=["tickets"], request=s.TicketBridgeInSerializer,
                   responses={200: s.TicketBridgeSerializer, **ERRORS}, summary="Change a ticket bridge")
    def patch(self, request, pk: int):
        bridge = _get(request, TicketBridge.objects.select_related("tenant"), "ticket bridge", pk=pk)
        body = s.TicketBridgeInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        data.pop("tenant", None)
        bridge = config.bridge_save(tenant=bridge.tenant, actor=request.user, data=data, bridge=bridge)
        return Response(s.TicketBridgeSerializer(bridge).data)

    @extend_schema(tags=["tickets"], responses={204: None, **ERRORS}, summary="Delete a ticket bridge")
    def delete(self, request, pk: int):
        config.bridge_delete(bridge=_get(request, TicketBridge.objects, "ticket bridge", pk=pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActionListView(APIView):
    required_scopes = MANAGE

    @extend_schema(tags=["actions"], responses={200: s.ActionSerializer(many=True), **ERRORS},
                   summary="List remediation actions (secrets are never shown)")
    def get(self, request):
        qs = tenant_filter(request, RemediationAction.objects.select_related("tenant").order_by("tenant_id", "name"))
        return Response(s.ActionSerializer(qs, many=True).data)

    @extend_schema(tags=["actions"], request=s.ActionCreateSerializer,
                   responses={201: s.ActionWithSecretSerializer, **ERRORS},
                   summary="Create a remediation action; the answer shows its signing secret once")
    def post(self, request):
        body = s.ActionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        tenant = tenant_of_request(request.user, data.pop("tenant", None))
        action, secret = config.action_save(tenant=tenant, actor=request.user, data=data)
        return Response({**s.ActionSerializer(action).data, "secret": secret}, status=status.HTTP_201_CREATED)


class ActionDetailView(APIView):
    required_scopes = MANAGE

    @extend_schema(tags=["actions"], responses={200: s.ActionSerializer, **ERRORS}, summary="One remediation action")
    def get(self, request, pk: int):
        return Response(s.ActionSerializer(_get(request, RemediationAction.objects, "action", pk=pk)).data)

    @extend_schema(tags=["actions"], request=s.ActionInSerializer, responses={200: s.ActionSerializer, **ERRORS},
                   summary="Change a remediation action")
    def patch(self, request, pk: int):
        action = _get(request, RemediationAction.objects.select_related("tenant"), "action", pk=pk)
        body = s.ActionInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        data.pop("tenant", None)
        action, _ = config.action_save(tenant=action.tenant, actor=request.user, data=data, action=action)
        return Response(s.ActionSerializer(action).data)

    @extend_schema(tags=["actions"], responses={204: None, **ERRORS}, summary="Delete a remediation action")
    def delete(self, request, pk: int):
        config.action_delete(action=_get(request, RemediationAction.objects, "action", pk=pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertTicketView(APIView):
    required_scopes = {"GET": ALERTS_READ, "POST": ALERTS_WRITE}

    @extend_schema(tags=["tickets"], responses={200: s.TicketSerializer, **ERRORS}, summary="The alert's ticket")
    def get(self, request, alert_id: int):
        ticket = Ticket.objects.filter(alert=_alert(request, alert_id)).first()
        if ticket is None:
            raise NotFound(f"alert {alert_id} has no ticket")
        return Response(s.TicketSerializer(ticket).data)

    @extend_schema(tags=["tickets"], request=None, responses={201: s.TicketSerializer, **ERRORS,
                                                              502: OpenApiResponse(description="The tracker refused")},
                   summary="Create the alert's ticket in the tenant's tracker now")
    def post(self, request, alert_id: int):
        ticket = tickets.ticket_create(alert_id=_alert(request, alert_id).pk, actor=request.user)
        if ticket.state == Ticket.State.FAILED:
            raise ApplicationError(f"the tracker did not create the ticket: {ticket.last_error}", code="ticket_failed",
                                   status_code=502, details={"ticket": s.TicketSerializer(ticket).data})
        return Response(s.TicketSerializer(ticket).data, status=status.HTTP_201_CREATED)


class AlertActionRunView(APIView):
    required_scopes = {"POST": ALERTS_WRITE}

    @extend_schema(tags=["actions"], request=s.ActionRunInSerializer, responses={200: s.ActionRunSerializer, **ERRORS},
                   summary="Run a remediation action on the alert (signed call to the runbook endpoint)")
    def post(self, request, alert_id: int, name: str):
        alert = _alert(request, alert_id)
        action = RemediationAction.objects.filter(tenant_id=alert.tenant_id, name=name).first()
        if action is None:
            raise NotFound(f"no action {name!r}")
        body = s.ActionRunInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = remediation.action_run(action=action, alert=alert, actor=request.user,
                                     confirm=body.validated_data["confirm"])
        return Response(s.ActionRunSerializer(run).data)


class AlertActionRunsView(APIView):
    required_scopes = {"GET": ALERTS_READ}

    @extend_schema(tags=["actions"], responses={200: s.ActionRunSerializer(many=True), **ERRORS},
                   summary="Remediation runs on the alert, newest first")
    def get(self, request, alert_id: int):
        runs = ActionRun.objects.filter(alert=_alert(request, alert_id)).select_related("action")[:100]
        return Response(s.ActionRunSerializer(runs, many=True).data)
