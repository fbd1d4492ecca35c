"""``POST|GET|DELETE /api/v1/heartbeats/<name>`` and ``GET /api/v1/heartbeats``.

Thin: pick the tenant (a tenant token's own; a platform token names ``?tenant=``), parse, call a
service. Pinging needs ``alerts:ingest`` (the scope of everything that reports in), as does
deleting; reading needs ``alerts:read``. Another tenant's heartbeat is 404.
"""
from __future__ import annotations

import orjson
from django.db import InterfaceError, OperationalError
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import clock
from apps.core.errors import NotFound, ServiceUnavailable, Unprocessable
from apps.core.pagination import NewestFirstCursorPagination
from apps.core.scopes import ALERTS_INGEST, ALERTS_READ

from ..integrations.intake import resolve_tenant
from ..services import UNAVAILABLE_RETRY_AFTER, PayloadTooLarge
from ..views import LogIntakeView, _Error
from . import selectors, services
from .params import check_name, parse_ping

MAX_BODY = 64 * 1024
_TENANT = OpenApiParameter("tenant", str, description="Tenant slug; required with a platform token")
_TIMEOUT = OpenApiParameter("timeout", str, description="Longest expected gap between pings (\"5m\", \"26h\"); "
                                                       "default HEARTBEAT_DEFAULT_TIMEOUT")
_GRACE = OpenApiParameter("grace", str, description="Extra wait past the timeout before the alert (default "
                                                   "HEARTBEAT_DEFAULT_GRACE)")
_ERRORS = {401: OpenApiResponse(_Error, description="missing or invalid token"),
           403: OpenApiResponse(_Error, description="token lacks the scope, or names another tenant"),
           404: OpenApiResponse(_Error, description="no such heartbeat in the tenant")}


class _HeartbeatView(APIView):
    """The log intake's raw-body reading and its 503 when the database is down (composed, not
    inherited: inheriting LogIntakeView would also inherit its POST handler)."""

    parser_classes: list = []
    _read_body = staticmethod(LogIntakeView._read_body)

    def handle_exception(self, exc):
        # The database is also hit by authentication, before the handler runs.
        if isinstance(exc, (OperationalError, InterfaceError)):
            exc = ServiceUnavailable("database unavailable; retry later",
                                     headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})
        return super().handle_exception(exc)

    def _tenant_id(self, request) -> int:
        return resolve_tenant(bound_slug=request.user.tenant_slug, requested=request.query_params.get("tenant"))[0]


class HeartbeatView(_HeartbeatView):
    required_scopes = {"POST": ALERTS_INGEST, "DELETE": ALERTS_INGEST, "GET": ALERTS_READ}

    @extend_schema(tags=["heartbeats"], operation_id="heartbeat_ping", parameters=[_TENANT, _TIMEOUT, _GRACE,
                   OpenApiParameter("severity", str), OpenApiParameter("plugin", str)],
                   request={"application/json": {"type": "object"}},
                   responses={200: {"type": "object"}, 413: OpenApiResponse(_Error),
                              422: OpenApiResponse(_Error, description="bad name/timeout/grace/severity/plugin, "
                                                                       "or the tenant's heartbeat limit"), **_ERRORS},
                   examples=[OpenApiExample("settings in the body", request_only=True,
                                            value={"timeout": "26h", "grace": "30m", "severity": "warning"})],
                   summary="Ping a heartbeat (created on its first ping); resolves its alert if it was down")
    def post(self, request, name: str):
        check_name(name)
        declared = request.META.get("CONTENT_LENGTH")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise PayloadTooLarge(f"body: {declared} bytes; a ping's body is at most {MAX_BODY}")
        raw = self._read_body(request, MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise PayloadTooLarge(f"body: over {MAX_BODY} bytes; a ping's body is at most {MAX_BODY}")
        tenant_id = self._tenant_id(request)
        spec = parse_ping(dict(request.query_params.items()), _body(raw))
        return Response(services.heartbeat_ping(tenant_id=tenant_id, name=name, spec=spec).as_dict())

    @extend_schema(tags=["heartbeats"], operation_id="heartbeat_get", parameters=[_TENANT],
                   responses={200: {"type": "object"}, **_ERRORS},
                   summary="One heartbeat: state up/late/down, last seen, next due")
    def get(self, request, name: str):
        hb = selectors.heartbeats(tenant_ids=[self._tenant_id(request)]).filter(name=name).first()
        if hb is None:
            raise NotFound(f"heartbeat {name!r} not found", details={"name": name})
        return Response(selectors.as_dict(hb, clock.now()))

    @extend_schema(tags=["heartbeats"], operation_id="heartbeat_delete", parameters=[_TENANT],
                   responses={204: None, **_ERRORS},
                   summary="Delete a heartbeat (its open alert is resolved)")
    def delete(self, request, name: str):
        services.heartbeat_delete(tenant_id=self._tenant_id(request), name=name)
        return Response(status=204)


class HeartbeatListView(_HeartbeatView):
    required_scope = ALERTS_READ

    @extend_schema(tags=["heartbeats"], operation_id="heartbeats_list", parameters=[OpenApiParameter("tenant", str, description=(
                   "Platform tokens: only this tenant's"))], responses={200: {"type": "object"}, **_ERRORS},
                   summary="List heartbeats, newest first (cursor pagination)")
    def get(self, request):
        bound = request.user.tenant_slug
        tenant_ids = [self._tenant_id(request)] if bound or request.query_params.get("tenant") else None
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(selectors.heartbeats(tenant_ids=tenant_ids), request, view=self)
        now = clock.now()
        return paginator.get_paginated_response([selectors.as_dict(hb, now) for hb in page])


def _body(raw: bytes) -> dict:
    if not raw.strip():
        return {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"body: not valid JSON: {exc}", code="invalid_body", details={"field": "body"}) from None
    if not isinstance(doc, dict):
        raise Unprocessable("body: must be a JSON object such as {\"timeout\": \"5m\"}", code="invalid_body",
                            details={"field": "body"})
    return doc
