"""Channels and routing policies API. Thin: validate the shape, call a service, shape the answer.

Tenant tokens see only their tenant's channels and policies (others are 404); platform tokens see
every tenant and name the tenant (``tenant`` in the body, or ``?tenant=`` for import, export and
reorder). Scopes: ``channels:read`` to read and preview, ``channels:write`` to change and test.
Bad input answers 422 with the error body naming the field.
"""
from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.alerts.models import Alert
from apps.alerts.payload import alert_payload
from apps.core.errors import NotFound, Unprocessable, validation_message
from apps.core.parsers import DepthLimitedJSONParser
from apps.core.scopes import CHANNELS_READ, CHANNELS_WRITE
from apps.core.vocabulary import SEVERITIES
from apps.rules.api.parsers import PACK_PARSERS
from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_of_request

from .. import channel_services as services
from .. import policies, policy_files, selectors
from . import channel_serializers as s

SCOPES = {"GET": CHANNELS_READ, "*": CHANNELS_WRITE}
ERRORS = {401: OpenApiResponse(description="no/bad token"), 403: OpenApiResponse(description="missing scope"),
          404: OpenApiResponse(description="not found (or another tenant's)"),
          422: OpenApiResponse(description="invalid input; the error names the field")}
TENANT_PARAM = OpenApiParameter("tenant", str, description="Tenant slug (platform tokens; tenant tokens use theirs)")


def _valid(serializer_class, data, *, partial: bool = False) -> dict:
    ser = serializer_class(data=data, partial=partial)
    if not ser.is_valid():
        raise Unprocessable(validation_message(ser.errors), details=ser.errors)
    return dict(ser.validated_data)


def _visible(request) -> list[int] | None:
    return None if request.user.tenant_id is None else [request.user.tenant_id]


def _newest_alert(tenant_id: int) -> dict | None:
    """The tenant's newest alert as a payload: templates are previewed against real data."""
    alert = (Alert.objects.filter(tenant_id=tenant_id).select_related("tenant", "plugin", "assignee")
             .order_by("-id").first())
    return alert_payload(alert) if alert else None


def _channel(request, pk: int):
    return get_object_or_404(selectors.channels(tenant_ids=_visible(request)), pk=pk)


def _policy(request, pk: int):
    return get_object_or_404(selectors.policies(tenant_ids=_visible(request)), pk=pk)


class ChannelListView(APIView):
    required_scopes = SCOPES

    @extend_schema(tags=["channels"], parameters=[TENANT_PARAM], responses={200: s.ChannelSerializer(many=True), **ERRORS},
                   summary="List notification channels (secrets are never shown)")
    def get(self, request):
        qs = selectors.channels(tenant_ids=_visible(request))
        if request.query_params.get("tenant"):
            qs = qs.filter(tenant__slug=request.query_params["tenant"])
        return Response(s.ChannelSerializer(qs, many=True).data)

    @extend_schema(tags=["channels"], request=s.ChannelCreateSerializer,
                   responses={201: s.ChannelWithPreviewSerializer, **ERRORS},
                   summary="Create a channel; secret config keys are stored encrypted and never shown again")
    def post(self, request):
        data = _valid(s.ChannelCreateSerializer, request.data)
        tenant = tenant_of_request(request.user, data.pop("tenant", None))
        channel, preview = services.create_channel(tenant=tenant, alert=_newest_alert(tenant.pk), actor=request.user,
                                                   **data)
        return Response({**s.ChannelSerializer(channel).data, "preview": preview}, status=status.HTTP_201_CREATED)


class ChannelDetailView(APIView):
    required_scopes = SCOPES

    @extend_schema(tags=["channels"], responses={200: s.ChannelSerializer, **ERRORS})
    def get(self, request, pk: int):
        return Response(s.ChannelSerializer(_channel(request, pk)).data)

    @extend_schema(tags=["channels"], request=s.ChannelUpdateSerializer,
                   responses={200: s.ChannelWithPreviewSerializer, **ERRORS},
                   summary="Change name, config (merged; omitted secrets kept), templates, rate limit or enabled")
    def patch(self, request, pk: int):
        channel = _channel(request, pk)
        data = _valid(s.ChannelUpdateSerializer, request.data, partial=True)
        channel, preview = services.update_channel(channel=channel, alert=_newest_alert(channel.tenant_id),
                                                   actor=request.user, **data)
        return Response({**s.ChannelSerializer(channel).data, "preview": preview})

    @extend_schema(tags=["channels"], request=s.ChannelUpdateSerializer,
                   responses={200: s.ChannelWithPreviewSerializer, **ERRORS})
    def put(self, request, pk: int):
        return self.patch(request, pk)

    @extend_schema(tags=["channels"], responses={204: None, **ERRORS})
    def delete(self, request, pk: int):
        services.delete_channel(channel=_channel(request, pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelTestView(APIView):
    required_scopes = {"*": CHANNELS_WRITE}

    @extend_schema(tags=["channels"], request=None, responses={200: s.ChannelTestSerializer, **ERRORS},
                   summary="Send a test notification now and report the far side's answer")
    def post(self, request, pk: int):
        return Response(services.test_channel(channel=_channel(request, pk)).as_dict())


class PolicyListView(APIView):
    required_scopes = SCOPES

    @extend_schema(tags=["policies"], parameters=[TENANT_PARAM], responses={200: s.PolicySerializer(many=True), **ERRORS},
                   summary="List routing policies in evaluation order")
    def get(self, request):
        qs = selectors.policies(tenant_ids=_visible(request))
        if request.query_params.get("tenant"):
            qs = qs.filter(tenant__slug=request.query_params["tenant"])
        return Response(s.PolicySerializer(qs, many=True).data)

    @extend_schema(tags=["policies"], request=s.PolicyWriteSerializer, responses={201: s.PolicySerializer, **ERRORS},
                   summary="Create a policy (channels are ids of the same tenant's channels)")
    def post(self, request):
        _valid(s.PolicyWriteSerializer, request.data)
        data = dict(request.data)  # the service checks values; the raw body keeps JSON types as sent
        tenant = tenant_of_request(request.user, data.pop("tenant", None))
        policy = services.create_policy(tenant=tenant, actor=request.user, **data)
        return Response(s.PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyDetailView(APIView):
    required_scopes = SCOPES

    @extend_schema(tags=["policies"], responses={200: s.PolicySerializer, **ERRORS})
    def get(self, request, pk: int):
        return Response(s.PolicySerializer(_policy(request, pk)).data)

    @extend_schema(tags=["policies"], request=s.PolicyWriteSerializer, responses={200: s.PolicySerializer, **ERRORS},
                   summary="Change any field of a policy")
    def patch(self, request, pk: int):
        policy = _policy(request, pk)
        _valid(s.PolicyWriteSerializer, request.data, partial=True)
        data = {k: v for k, v in dict(request.data).items() if k != "tenant"}
        return Response(s.PolicySerializer(services.update_policy(policy=policy, actor=request.user, **data)).data)

    @extend_schema(tags=["policies"], request=s.PolicyWriteSerializer, responses={200: s.PolicySerializer, **ERRORS})
    def put(self, request, pk: int):
        return self.patch(request, pk)

    @extend_schema(tags=["policies"], responses={204: None, **ERRORS})
    def delete(self, request, pk: int):
        services.delete_policy(policy=_policy(request, pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PolicyReorderView(APIView):
    required_scopes = {"*": CHANNELS_WRITE}

    @extend_schema(tags=["policies"], request=s.ReorderSerializer, responses={200: s.PolicySerializer(many=True), **ERRORS},
                   summary="Set the evaluation order: every policy id of the tenant, once")
    def post(self, request):
        data = _valid(s.ReorderSerializer, request.data)
        tenant = tenant_of_request(request.user, data.get("tenant") or request.query_params.get("tenant"))
        rows = services.reorder_policies(tenant=tenant, order=data["order"], actor=request.user)
        return Response(s.PolicySerializer(rows, many=True).data)


def _alert_like(raw: dict, tenant: Tenant) -> dict:
    severity = raw.get("severity", "info")
    if severity not in SEVERITIES:
        raise Unprocessable(f"alert.severity: unknown {severity!r}; known: {', '.join(SEVERITIES)}",
                            details={"alert.severity": "unknown"})
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        raise Unprocessable("alert.labels: give an object", details={"alert.labels": "not an object"})
    rule = raw.get("rule")
    if isinstance(rule, str):
        rule = {"key": rule}
    return {**raw, "tenant": tenant.slug, "severity": severity, "labels": labels, "rule": rule}


class PolicyPreviewView(APIView):
    required_scopes = {"*": CHANNELS_READ}

    @extend_schema(tags=["policies"], request=s.PreviewRequestSerializer, responses={200: s.PreviewSerializer, **ERRORS},
                   summary="Which policies, webhooks and channels an alert (by id, or alert-like body) would reach")
    def post(self, request):
        data = _valid(s.PreviewRequestSerializer, request.data)
        at = data.get("at") or timezone.now()
        if data.get("alert_id") is not None:
            alerts = Alert.objects.select_related("tenant", "plugin", "assignee")
            if request.user.tenant_id is not None:
                alerts = alerts.filter(tenant_id=request.user.tenant_id)
            alert = alerts.filter(pk=data["alert_id"]).first()
            if alert is None:
                raise NotFound(f"alert {data['alert_id']} not found")
            return Response(policies.preview(tenant_id=alert.tenant_id, alert=alert_payload(alert), at=at))
        if data.get("alert") is None:
            raise Unprocessable("alert_id: give alert_id or an alert object", details={"alert_id": "required"})
        tenant = tenant_of_request(request.user, data.get("tenant"))
        return Response(policies.preview(tenant_id=tenant.pk, alert=_alert_like(data["alert"], tenant), at=at))


class _FormatIsOurs(DefaultContentNegotiation):
    """``?format=`` picks the document format here, not DRF's renderer (which would 404 on "yaml")."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class PolicyExportView(APIView):
    required_scopes = {"*": CHANNELS_READ}
    content_negotiation_class = _FormatIsOurs

    @extend_schema(tags=["policies"], parameters=[OpenApiParameter("format", str, enum=["yaml", "json"]), TENANT_PARAM],
                   responses={(200, "application/yaml"): str, (200, "application/json"): str, **ERRORS},
                   summary="Export the tenant's policies (channels by name) as import reads them back")
    def get(self, request):
        fmt = request.query_params.get("format", "yaml")
        if fmt not in ("yaml", "json"):
            raise Unprocessable(f"format: must be yaml or json, got {fmt!r}", details={"format": "unknown"})
        tenant = tenant_of_request(request.user, request.query_params.get("tenant"))
        response = HttpResponse(policy_files.export_text(tenant, fmt),
                                content_type="application/json" if fmt == "json" else "application/yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="policies-{tenant.slug}.{fmt}"'
        return response


class PolicyImportView(APIView):
    required_scopes = {"*": CHANNELS_WRITE}
    parser_classes = [DepthLimitedJSONParser, *PACK_PARSERS]

    @extend_schema(tags=["policies"], parameters=[TENANT_PARAM],
                   request={"application/json": dict, "application/yaml": str},
                   responses={200: s.ImportReportSerializer, **ERRORS},
                   summary="Replace the tenant's policies with a YAML/JSON document (all-or-nothing)")
    def post(self, request):
        tenant = tenant_of_request(request.user, request.query_params.get("tenant"))
        data = request.data
        if isinstance(data, str):
            report = policy_files.import_policies(tenant=tenant, text=data, actor=request.user)
        else:
            report = policy_files.import_policies(tenant=tenant, doc=data, actor=request.user)
        return Response(report.as_dict())
