"""``POST /api/v1/logs``: the log intake endpoint (DESIGN 3.1). Thin: reads the raw body and
hands it to ``services.accept_body``; every error is an ApplicationError rendered as the one
error body."""
from __future__ import annotations

from django.conf import settings
from django.db import InterfaceError, OperationalError
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import ServiceUnavailable
from apps.core.scopes import LOGS_WRITE

from .services import UNAVAILABLE_RETRY_AFTER, Writer, accept_body, check_size

_Accepted = inline_serializer("LogsAccepted", {
    "accepted": serializers.IntegerField(),
    "rejected": inline_serializer("RejectedEvent", {"index": serializers.IntegerField(),
                                                     "error": serializers.CharField()}, many=True),
    "batch_id": serializers.IntegerField(allow_null=True),
})
_Error = inline_serializer("ErrorBody", {"error": serializers.DictField()})


class LogIntakeView(APIView):
    """Accept a batch of log events: JSON array, ``{"events": [...]}`` or NDJSON."""

    required_scope = LOGS_WRITE
    # No DRF parser: the body is read once, raw, and parsed with orjson by the service.
    parser_classes: list = []

    @extend_schema(
        request={"application/json": {"type": "array", "items": {"type": "object"}},
                 "application/x-ndjson": {"type": "string"}},
        responses={
            202: _Accepted,
            401: OpenApiResponse(_Error, description="missing or invalid token"),
            403: OpenApiResponse(_Error, description="token lacks logs:write"),
            413: OpenApiResponse(_Error, description="body over INGEST_MAX_BYTES or INGEST_MAX_EVENTS"),
            422: OpenApiResponse(_Error, description="a body that can never be valid: do not resend"),
            429: OpenApiResponse(_Error, description="tenant over its quota: resend after Retry-After"),
            503: OpenApiResponse(_Error, description="database unavailable: resend after Retry-After"),
        },
        examples=[OpenApiExample("events", request_only=True, value=[
            {"ts": "2024-05-01T12:00:00Z", "level": "ERROR", "message": "payment failed",
             "tenant_id": "acme", "plugin_id": "checkout", "trace_id": "4bf92f35"}])],
    )
    def post(self, request):
        declared = request.META.get("CONTENT_LENGTH")
        if declared and declared.isdigit():
            check_size(int(declared))  # refuse before reading a huge body into memory
        raw = self._read_body(request, settings.INGEST_MAX_BYTES + 1)
        principal = request.user
        result = accept_body(raw=raw, content_type=request.content_type or "",
                             writer=Writer(token_id=principal.token_id, tenant_slug=principal.tenant_slug))
        return Response(result.as_dict(), status=202)

    @staticmethod
    def _read_body(request, limit: int) -> bytes:
        # Django's request.body refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB); our
        # limit is INGEST_MAX_BYTES, so read the stream ourselves, at most limit bytes.
        if request.META.get("CONTENT_LENGTH"):
            return request._request.read(limit)
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            # No Content-Length: Django's stream reads as empty; gunicorn de-chunks wsgi.input.
            return request.META["wsgi.input"].read(limit)
        return b""

    def handle_exception(self, exc):
        # The database is also hit by authentication, before post() runs.
        if isinstance(exc, (OperationalError, InterfaceError)):
            exc = ServiceUnavailable("database unavailable; resend later",
                                     headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})
        return super().handle_exception(exc)
