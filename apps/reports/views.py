"""The signed download links: no session, no token; the signed value is the credential.

404 for a link whose signature does not verify (and for one naming an alert that is gone or no
longer its tenant's), 410 Gone for a genuine link past its expiry. Bodies are the API's one error
shape, so scripts can branch on ``error.code``.
"""
from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from apps.alerts.models import Alert
from apps.core.client_ip import client_ip
from apps.core.errors import error_body

from . import links, services
from .models import ReportFormat

_TYPES = {ReportFormat.NDJSON: ("application/x-ndjson", "ndjson"), ReportFormat.ZIP: ("application/zip", "zip")}


def _refuse(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=status)
    response["Cache-Control"] = "no-store"
    return response


def _serve(request: HttpRequest, token: str, fmt: str) -> HttpResponse:
    try:
        claim = links.verify(token)
    except links.BadLink:
        return _refuse(404, "not_found", "diagnostic report link not valid (altered, truncated or not issued here)")
    except links.ExpiredLink as exc:
        return _refuse(410, "link_expired", str(exc))
    alert = (Alert.objects.select_related("tenant", "plugin")
             .filter(pk=claim.alert_id, tenant_id=claim.tenant_id).first())
    if alert is None:
        return _refuse(404, "not_found", f"alert {claim.alert_id} not found")
    with transaction.atomic():
        body = services.download(alert=alert, claim=claim, fmt=fmt, ip=client_ip(request))
    content_type, ext = _TYPES[fmt]
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="alert-{alert.pk}-report.{ext}"'
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex"
    return response


@require_GET
def download_ndjson(request: HttpRequest, token: str) -> HttpResponse:
    return _serve(request, token, ReportFormat.NDJSON)


@require_GET
def download_zip(request: HttpRequest, token: str) -> HttpResponse:
    return _serve(request, token, ReportFormat.ZIP)
