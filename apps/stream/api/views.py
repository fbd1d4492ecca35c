"""GET /api/v1/stream: server-sent events, served by the ``stream`` process (uvicorn, ASGI).

An async Django view: DRF is sync, so authentication is done here by hand (in a thread) with the
same rules as the API and the console. A bearer token needs ``alerts:read`` and sees its tenant
(a platform token: every tenant, or ``?tenant=``); without a token the console's session cookie
counts, and a tenant member sees their tenants only. Under WSGI (the sync web workers) the view
refuses with 503: one stream would hold a worker for good.

Cross-origin: when the console reaches the stream on another origin (``make run``: port 8002),
only STREAM_ALLOWED_ORIGINS get CORS headers with credentials; the stream is read-only (GET), so
there is nothing for CSRF to protect, and SameSite=Lax keeps the cookie off cross-site requests.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.alerts import roles
from apps.core import bruteforce
from apps.core.client_ip import client_ip
from apps.core.errors import ApplicationError, error_body
from apps.core.scopes import ALERTS_READ
from apps.tenants import tokens
from apps.tenants.models import Tenant

from .. import relay, selectors
from ..hub import get_hub


def _cors(request: HttpRequest) -> dict[str, str]:
    origin = request.headers.get("Origin", "")
    if origin and origin in settings.STREAM_ALLOWED_ORIGINS:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    return {"Vary": "Origin"}


def _error(request: HttpRequest, status: int, code: str, message: str, headers: dict | None = None) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status, headers={**_cors(request), **(headers or {})})


def last_event_id(request: HttpRequest) -> int | None:
    """``Last-Event-ID`` header, else ``?last_event_id=``; a non-negative integer or None."""
    raw = request.headers.get("Last-Event-ID") or request.GET.get("last_event_id") or ""
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ApplicationError(f"Last-Event-ID must be a non-negative integer event id, got {raw[:40]!r}",
                               code="invalid")
    return int(raw)


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise ApplicationError(f"tenant {slug!r} not found", code="not_found", status_code=404)
    return tenant


def authorize(request: HttpRequest) -> frozenset[int] | None:
    """The tenant ids this client may stream (None: every tenant); raises ApplicationError."""
    slug = request.GET.get("tenant", "").strip()
    header = request.headers.get("Authorization", "")
    if header:
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise ApplicationError("Authorization header must be 'Bearer <token>'", code="not_authenticated",
                                   status_code=401)
        token = tokens.authenticate_token(parts[1])
        if token is None:
            wait = bruteforce.record_failure(plain=parts[1], address=client_ip(request))
            if wait:
                raise ApplicationError(bruteforce.refusal_message(wait), code="throttled", status_code=429,
                                       headers={"Retry-After": str(wait)})
            raise ApplicationError("invalid, expired or revoked token", code="authentication_failed",
                                   status_code=401)
        if ALERTS_READ not in token.scopes:
            raise ApplicationError(f"this token lacks the {ALERTS_READ} scope", code="permission_denied",
                                   status_code=403)
        if token.tenant_id:
            if slug and slug != token.tenant.slug:
                raise ApplicationError(f"a tenant token streams its own tenant ({token.tenant.slug}) only",
                                       code="permission_denied", status_code=403)
            return frozenset({token.tenant_id})
        return frozenset({_tenant(slug).pk}) if slug else None
    user = request.user
    if not user.is_authenticated:
        raise ApplicationError(f"sign in to the console, or send 'Authorization: Bearer <token>' with {ALERTS_READ}",
                               code="not_authenticated", status_code=401)
    visible = roles.visible_tenant_ids(user)
    if slug:
        tenant = _tenant(slug)
        if visible is not None and tenant.pk not in visible:
            raise ApplicationError(f"tenant {slug!r} not found", code="not_found", status_code=404)
        return frozenset({tenant.pk})
    if visible == []:
        raise ApplicationError("your account belongs to no tenant yet; ask an admin for a membership",
                               code="permission_denied", status_code=403)
    return None if visible is None else frozenset(visible)


# Read-only: no method here changes anything, so a POST gets the clear 405 below, not a CSRF page.
@csrf_exempt
async def stream(request: HttpRequest) -> HttpResponse:
    if request.method == "OPTIONS":  # CORS preflight (a cross-origin reconnect sends Last-Event-ID)
        return HttpResponse(status=204, headers={
            **_cors(request), "Access-Control-Allow-Methods": "GET",
            "Access-Control-Allow-Headers": "Authorization, Last-Event-ID, Cache-Control",
            "Access-Control-Max-Age": "600"})
    if request.method != "GET":
        return _error(request, 405, "method_not_allowed", f"{request.method} is not allowed; use GET",
                      {"Allow": "GET, OPTIONS"})
    if not isinstance(request, ASGIRequest):
        return _error(request, 503, "unavailable",
                      "the stream is served by the stream process (uvicorn alertcenter.asgi:application), "
                      "not by the web workers; route /api/v1/stream to it", {"Retry-After": "30"})
    try:
        after = last_event_id(request)
        tenant_ids = await sync_to_async(selectors.fresh, thread_sensitive=False)(authorize, request)
    except ApplicationError as exc:
        return _error(request, exc.status_code, exc.code, exc.message, exc.headers)
    body = relay.events(get_hub(), tenant_ids=tenant_ids, last_event_id=after,
                        keepalive_seconds=settings.STREAM_KEEPALIVE_SECONDS,
                        max_age_seconds=settings.STREAM_MAX_CONNECTION_SECONDS, replay_max=settings.STREAM_REPLAY_MAX)
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event through at once
    for name, value in _cors(request).items():
        response[name] = value
    return response
