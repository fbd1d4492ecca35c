"""``POST /api/v1/metrics``: metric samples in (README "Metrics and metric rules"). Thin: size and
quota checks with the log intake's helpers, then ``apps.rules.metrics`` parses, rolls up and stores.

Answers: 202 with ``accepted`` / ``rejected: [{index, error}]`` / ``series_created`` (also when every
sample was rejected: each one says why); 413 over INGEST_MAX_BYTES or METRICS_MAX_SAMPLES; 422 for
a body that can never be valid; 429 over the tenant's intake quota (samples count like events).
"""
from __future__ import annotations

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.views import APIView

from apps.core import clock
from apps.core.errors import ApplicationError, NotFound, ServiceUnavailable, Unprocessable
from apps.core.scopes import METRICS_WRITE
from apps.ingest import quota
from apps.ingest.services import UNAVAILABLE_RETRY_AFTER, PayloadTooLarge, _quota_error, check_size
from apps.ingest.views import LogIntakeView
from apps.rules.metrics import MetricsBodyError, parse_samples, store_samples
from apps.tenants.models import Tenant


class MetricsIntakeView(APIView):
    """Accept metric samples: a JSON array of ``{name, labels, value, ts}`` or Prometheus text."""

    required_scope = METRICS_WRITE
    parser_classes: list = []

    @extend_schema(
        parameters=[OpenApiParameter("tenant", str, description="Tenant slug (platform tokens only)")],
        request={"application/json": {"type": "array", "items": {"type": "object"}},
                 "text/plain": {"type": "string"}},
        responses={202: OpenApiResponse(description="accepted, rejected [{index, error}], series_created"),
                   413: OpenApiResponse(description="body over INGEST_MAX_BYTES or METRICS_MAX_SAMPLES"),
                   422: OpenApiResponse(description="a body that can never be valid"),
                   429: OpenApiResponse(description="tenant over its intake quota: resend after Retry-After")},
    )
    def post(self, request):
        declared = request.META.get("CONTENT_LENGTH")
        if declared and declared.isdigit():
            check_size(int(declared))
        raw = LogIntakeView._read_body(request, settings.INGEST_MAX_BYTES + 1)
        check_size(len(raw))
        tenant = self._tenant(request)
        now = clock.now()
        try:
            samples, rejected = parse_samples(raw, request.content_type or "", now=now.timestamp())
        except MetricsBodyError as exc:
            raise Unprocessable(str(exc), code="invalid_body") from None
        total = len(samples) + len(rejected)
        if total > settings.METRICS_MAX_SAMPLES:
            raise PayloadTooLarge(
                f"{total} samples in one request; the limit is {settings.METRICS_MAX_SAMPLES} (METRICS_MAX_SAMPLES): "
                "send smaller batches", details={"max_samples": settings.METRICS_MAX_SAMPLES})
        if samples:
            wait = quota.consume({tenant.slug: len(samples)})
            if wait is not None:
                raise _quota_error(tenant.slug, wait)
        try:
            result = store_samples(tenant_id=tenant.pk, samples=samples, now=now)
        except Exception:
            quota.refund({tenant.slug: len(samples)})
            raise
        if result.rejected:
            quota.refund({tenant.slug: len(result.rejected)})  # only stored samples count
        rejected = sorted(rejected + result.rejected, key=lambda r: r["index"])
        # orjson, not DRF's renderer: the same compact UTF-8 JSON without content negotiation and
        # json.dumps over a rejection list that can be METRICS_MAX_SAMPLES long.
        return HttpResponse(orjson.dumps({"accepted": result.accepted, "rejected": rejected,
                                          "series_created": result.series_created}),
                            status=202, content_type="application/json")

    @staticmethod
    def _tenant(request) -> Tenant:
        principal = request.user
        slug = principal.tenant_slug or request.query_params.get("tenant")
        if principal.tenant_slug and request.query_params.get("tenant") not in (None, principal.tenant_slug):
            raise PermissionDenied("a tenant token writes its own tenant's metrics only (drop ?tenant=)")
        if not slug:
            raise ApplicationError("platform tokens must name the tenant: ?tenant=<slug>",
                                   details={"tenant": ["required"]})
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise NotFound(f"tenant {slug!r} not found")
        return tenant

    def handle_exception(self, exc):
        if isinstance(exc, (OperationalError, InterfaceError)):
            exc = ServiceUnavailable("database unavailable; resend later",
                                     headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})
        return super().handle_exception(exc)
