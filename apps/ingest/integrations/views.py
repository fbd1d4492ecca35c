"""``POST /api/v1/integrations/alertmanager``, ``/integrations/grafana`` and ``/events``.

Thin: read the raw body (bounded by INGEST_MAX_BYTES), pick the tenant, check Grafana's
signature, hand the parsed entries to ``intake.store_entries``; answer 202 with the batch id.
Every error is an ApplicationError rendered as the one error body.
"""
from __future__ import annotations

from datetime import timedelta

import orjson
from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from apps.core import clock
from apps.core.errors import Unprocessable
from apps.core.events import EventError
from apps.core.scopes import ALERTS_INGEST

from ..models import BatchKind
from ..normalize import BodyError, parse_body
from ..services import PayloadTooLarge, check_size
from ..views import LogIntakeView, _Accepted, _Error
from . import alertmanager, events, grafana, intake
from .secrets import check_signature

_TENANT = OpenApiParameter("tenant", str, description="Tenant slug; required with a platform token, "
                                                      "must be the token's own tenant otherwise")


def _responses(extra: dict | None = None) -> dict:
    return {
        202: _Accepted,
        401: OpenApiResponse(_Error, description="missing or invalid token" + (
            "; missing or wrong HMAC signature" if extra else "")),
        403: OpenApiResponse(_Error, description="token lacks alerts:ingest, or names another tenant"),
        413: OpenApiResponse(_Error, description="body over INGEST_MAX_BYTES"),
        422: OpenApiResponse(_Error, description="a body that can never be valid, naming the field"),
        429: OpenApiResponse(_Error, description="(events) tenant over its quota: resend after Retry-After"),
        503: OpenApiResponse(_Error, description="nothing stored: resend after Retry-After"),
    }


class _InboundView(LogIntakeView):
    """Shared plumbing: scope, raw body, tenant, errors (503 when the database is down)."""

    required_scope = ALERTS_INGEST

    def _body(self, request) -> bytes:
        declared = request.META.get("CONTENT_LENGTH")
        if declared and declared.isdigit():
            check_size(int(declared))  # refuse before reading a huge body into memory
        raw = self._read_body(request, settings.INGEST_MAX_BYTES + 1)
        check_size(len(raw))
        return raw

    def _tenant(self, request) -> tuple[int, str]:
        return intake.resolve_tenant(bound_slug=request.user.tenant_slug, requested=request.query_params.get("tenant"))

    @staticmethod
    def _json(raw: bytes):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Unprocessable(f"body: not valid JSON: {exc}", code="invalid_body", details={"field": "body"}) from None

    def _store(self, request, kind: str, tenant: tuple[int, str], parsed) -> Response:
        try:
            entries, rejected = parsed()
        except EventError as exc:
            raise Unprocessable(str(exc), code="invalid_body", details={"field": exc.field}) from None
        refused = {r["index"] for r in rejected}
        positions = [i for i in range(len(entries) + len(rejected)) if i not in refused]
        result = intake.store_entries(kind=kind, entries=entries, rejected=rejected, tenant_id=tenant[0],
                                      tenant_slug=tenant[1], token_id=request.user.token_id, positions=positions)
        return Response(result.as_dict(), status=202)


class AlertmanagerView(_InboundView):
    """Alertmanager webhook receiver (payload version 4): one alert here per Alertmanager alert."""

    @extend_schema(parameters=[_TENANT], request={"application/json": {"type": "object"}}, responses=_responses(),
                   examples=[OpenApiExample("firing", request_only=True, value={
                       "version": "4", "status": "firing", "receiver": "alert-center", "groupKey": "{}:{}",
                       "alerts": [{"status": "firing", "labels": {"alertname": "HighCPU", "severity": "critical",
                                                                   "job": "node"},
                                   "annotations": {"summary": "CPU above 90%"}, "fingerprint": "c0ffee0123456789",
                                   "startsAt": "2024-05-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]})])
    def post(self, request):
        raw = self._body(request)
        tenant = self._tenant(request)
        doc = self._json(raw)
        return self._store(request, BatchKind.ALERTMANAGER, tenant, lambda: alertmanager.parse(doc))


class GrafanaView(_InboundView):
    """Grafana unified alerting webhook contact point (payload version "1"), optionally HMAC-signed."""

    @extend_schema(parameters=[_TENANT], request={"application/json": {"type": "object"}},
                   responses=_responses({"hmac": True}))
    def post(self, request):
        raw = self._body(request)
        tenant = self._tenant(request)
        check_signature(tenant_id=tenant[0], kind=BatchKind.GRAFANA.value, body=raw, headers=request.headers)
        doc = self._json(raw)
        return self._store(request, BatchKind.GRAFANA, tenant, lambda: grafana.parse(doc))


class EventsView(_InboundView):
    """Generic events: JSON array, ``{"events": [...]}`` or NDJSON; each event judged on its own."""

    @extend_schema(parameters=[_TENANT],
                   request={"application/json": {"type": "array", "items": {"type": "object"}},
                            "application/x-ndjson": {"type": "string"}},
                   responses=_responses(),
                   examples=[OpenApiExample("event", request_only=True, value=[{
                       "source": "backup", "event": "BackupFailed", "resource": "db-1", "severity": "critical",
                       "status": "firing", "summary": "nightly backup failed"}])])
    def post(self, request):
        raw = self._body(request)
        tenant = self._tenant(request)
        try:
            items = parse_body(raw, request.content_type or "")
        except BodyError as exc:
            raise Unprocessable(f"body: {exc}", code="invalid_body", details={"field": "body"}) from None
        if len(items) > settings.INGEST_MAX_EVENTS:
            raise PayloadTooLarge(f"{len(items)} events in one request; the limit is {settings.INGEST_MAX_EVENTS}",
                                  details={"max_events": settings.INGEST_MAX_EVENTS})
        now = clock.now()
        return self._store(request, BatchKind.EVENTS, tenant, lambda: events.parse(
            items, tenant_slug=tenant[1], now=now, max_past=timedelta(seconds=settings.INGEST_MAX_PAST_SECONDS),
            max_future=timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS)))
