"""Write side of the delivery app used by the API, admin and commands.

Endpoints: create / update / delete / rotate the secret / self-test; manual fallback sends.
Every change is audited in the same transaction. Input errors raise ``ApplicationError``
subclasses (422 with a message naming the field and reason), which the API renders as is.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction

from apps.audit.services import record as audit
from apps.core import clock
from apps.core.errors import Unprocessable
from apps.core.vocabulary import EVENT_TEST, EVENT_TYPES, SEVERITIES

from . import breaker, messages, outbox
from .crypto import CryptoError
from .dispatch import process
from .models import Channel, Delivery, DeliveryState, WebhookEndpoint
from .notifications import Notification
from .secrets import active_secrets, seal
from .signing import new_secret, sign
from .ssrf import UnsafeURL, check_url
from .transports import OutboundMessage, TransportError, WebhookConfig, get_transport


def validate_url(url: str) -> str:
    """Refuse a URL the SSRF guard would refuse at send time (422 naming the reason).

    A host that does not resolve is refused too: registering it would only fail later.
    """
    url = (url or "").strip()
    cfg = WebhookConfig.from_settings()
    try:
        check_url(url, allowed_networks=cfg.allowed_networks, allow_http=cfg.allow_http)
    except UnsafeURL as exc:
        raise Unprocessable(f"url: {exc.message}", code="unsafe_url", details={"url": exc.message}) from exc
    return url


def _clean_event_types(event_types: Any) -> list[str]:
    if not isinstance(event_types, list) or not event_types:
        raise Unprocessable("event_types: give a non-empty list", details={"event_types": list(EVENT_TYPES)})
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise Unprocessable(f"event_types: unknown {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(event_types), key=EVENT_TYPES.index)


def _clean_severity(value: str) -> str:
    if value not in SEVERITIES:
        raise Unprocessable(f"min_severity: unknown {value!r}; known: {', '.join(SEVERITIES)}")
    return value


def create_endpoint(*, tenant: Any, url: str, description: str = "", min_severity: str = "info",
                    event_types: list[str] | None = None, actor: Any = None) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; returns it and its new ``whsec_`` secret (shown to the caller once)."""
    secret = new_secret()
    endpoint = WebhookEndpoint(
        tenant=tenant, url=validate_url(url), description=description, secret_encrypted=seal(secret),
        min_severity=_clean_severity(min_severity),
        event_types=_clean_event_types(list(EVENT_TYPES) if event_types is None else event_types),
    )
    with transaction.atomic():
        endpoint.save()
        audit("webhook.created", actor=actor, target=endpoint, tenant=tenant,
              data={"url": endpoint.url, "event_types": endpoint.event_types, "min_severity": endpoint.min_severity})
    return endpoint, secret


def update_endpoint(*, endpoint: WebhookEndpoint, actor: Any = None, **changes: Any) -> WebhookEndpoint:
    """Change url / description / min_severity / event_types / enabled. Re-enabling clears the
    disabled reason, the failure streak and the downgrade (the tenant says the receiver is fixed);
    a new URL for a downgraded endpoint clears its probe pace, so the new receiver is probed at once."""
    allowed = {"url", "description", "min_severity", "event_types", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise Unprocessable(f"cannot change {', '.join(sorted(unknown))}")
    if "url" in changes:
        changes["url"] = validate_url(changes["url"])
    if "min_severity" in changes:
        changes["min_severity"] = _clean_severity(changes["min_severity"])
    if "event_types" in changes:
        changes["event_types"] = _clean_event_types(changes["event_types"])
    with transaction.atomic():
        # Decided on the row as it stands now, locked: a downgrade that a delivery recorded since
        # ``endpoint`` was read must not be missed (its pace would stay the old receiver's).
        current = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint.pk)
        if changes.get("enabled") and not current.enabled:
            changes.update(disabled_reason="", failure_streak=0, downgraded_at=None, next_probe_at=None,
                           failed_probes=0)
        elif changes.get("url", current.url) != current.url and current.downgraded_at is not None:
            # A new receiver: the old one's probe pace (up to an hour's Retry-After) is not its own.
            # It stays downgraded until a probe, sent at the next sweep, gets through.
            changes.update(next_probe_at=None, failed_probes=0)
        before = {k: getattr(current, k) for k in changes}
        for key, value in changes.items():
            setattr(current, key, value)
        # Only what changed: a full save would write back a failure streak or downgrade that a
        # delivery recorded since the row was read.
        current.save(update_fields=[*changes, "updated_at"])
        audit("webhook.updated", actor=actor, target=current, tenant=current.tenant_id,
              data={k: {"from": str(before[k]), "to": str(v)} for k, v in changes.items() if before[k] != v})
    return current


def delete_endpoint(*, endpoint: WebhookEndpoint, actor: Any = None) -> None:
    """Delete; its deliveries stay (history) and pending ones fail with 'endpoint deleted'."""
    with transaction.atomic():
        audit("webhook.deleted", actor=actor, target=endpoint, tenant=endpoint.tenant_id, data={"url": endpoint.url})
        endpoint.delete()


def rotate_secret(*, endpoint: WebhookEndpoint, actor: Any = None) -> tuple[str, Any]:
    """New secret; the old one keeps signing for WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS.
    Returns (new secret, overlap end)."""
    secret = new_secret()
    until = clock.now() + timedelta(seconds=settings.WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS)
    with transaction.atomic():
        ep = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        ep.previous_secret_encrypted, ep.previous_secret_expires_at = ep.secret_encrypted, until
        ep.secret_encrypted = seal(secret)
        ep.save(update_fields=["secret_encrypted", "previous_secret_encrypted", "previous_secret_expires_at",
                               "updated_at"])
        audit("webhook.secret_rotated", actor=actor, target=ep, tenant=ep.tenant_id,
              data={"previous_valid_until": until.isoformat()})
    endpoint.refresh_from_db()
    return secret, until


@dataclass(frozen=True)
class SelfTestResult:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str

    def as_dict(self) -> dict:
        return asdict(self)


def self_test_endpoint(*, endpoint: WebhookEndpoint) -> SelfTestResult:
    """Send a signed ``webhook.test`` event now (synchronously) and report what happened.

    Works on disabled endpoints too (that is how a tenant checks a fix). Never raises for a
    delivery failure: the failure is the answer.
    """
    now = clock.now()
    body = messages.webhook_body(EVENT_TEST, orjson.dumps({"endpoint_id": endpoint.pk, "tenant": endpoint.tenant.slug,
                                                           "message": "Alert Center webhook self-check"}), now)
    msg_id = f"msg_test_{uuid.uuid4().hex}"
    try:
        secrets = active_secrets(endpoint, now)
    except CryptoError as exc:  # a secret no configured key decrypts: the operator's to fix, not a 500
        return SelfTestResult(False, None, 0, f"cannot sign: {exc}")
    headers = sign(body=body, msg_id=msg_id, timestamp=int(time.time()), secrets=secrets)
    headers["X-PowerX-Alert-ID"] = "test"
    try:
        result = get_transport("webhook").send(OutboundMessage(msg_id=msg_id, url=endpoint.url, body=body,
                                                               headers=headers))
    except TransportError as exc:
        return SelfTestResult(False, exc.status_code, exc.latency_ms or 0, exc.message)
    return SelfTestResult(True, result.status_code, result.latency_ms, "")


def send_fallback_now(*, notification: Notification, channel: str, actor: Any = None) -> Delivery:
    """Operator's manual notification: send the notification's alert by ``channel`` (email|sms) now.

    Writes a fallback delivery (retried by the sweeper if this first attempt fails), attempts it
    synchronously, audits, and returns the refreshed row. 422 when the tenant has no active contact.
    """
    if channel not in (Channel.EMAIL, Channel.SMS):
        raise Unprocessable(f"channel: must be email or sms, got {channel!r}")
    n = notification
    with transaction.atomic():
        rows = outbox.create_fallbacks(notification=n, source=None, now=clock.now(),
                                       reason="an operator sent it to you", channels=(channel,))
        if not rows:
            raise Unprocessable(f"tenant {n.payload['tenant']} has no active {channel} fallback contact",
                                code="no_contact")
        audit(f"alert.fallback_{channel}", actor=actor, target_type="alerts.alert", target_id=n.alert_id,
              tenant=n.tenant_id, data={"delivery_id": rows[0].pk, "recipients": rows[0].recipients})
    process([rows[0].pk])
    return Delivery.objects.get(pk=rows[0].pk)


def retry_deliveries(*, since: Any, tenant_slug: str | None = None, dry_run: bool = False,
                     ids: list[int] | None = None) -> dict[str, int]:
    """Make FAILED and DOWNGRADED deliveries created since ``since`` (or ``ids``) due now, with a
    fresh retry window. Rows of deleted or disabled endpoints are skipped (they would fail at once)."""
    now = clock.now()
    qs = Delivery.objects.filter(created_at__gte=since, state__in=[DeliveryState.FAILED, DeliveryState.DOWNGRADED])
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    if tenant_slug:
        qs = qs.filter(tenant__slug=tenant_slug)
    webhook_dead = qs.filter(channel=Channel.WEBHOOK).exclude(endpoint__enabled=True)
    skipped = webhook_dead.count()
    todo = qs.exclude(pk__in=webhook_dead.values("pk"))
    found = todo.count()
    if dry_run or not found:
        return {"found": found, "retried": 0, "skipped": skipped}
    expires_at = outbox.expires(now)
    # Behind an open breaker a row is not made due but parked (next_attempt_at None), its window
    # renewed: the endpoint's probes decide when it goes (apps.delivery.breaker).
    behind = todo.filter(channel=Channel.WEBHOOK, endpoint_id__in=breaker.downgraded_endpoints())
    n = 0
    with transaction.atomic():
        for rows, due in ((behind, None), (todo.exclude(pk__in=behind.values("pk")), now)):
            n += rows.filter(state=DeliveryState.DOWNGRADED).update(next_attempt_at=due, expires_at=expires_at)
            n += rows.filter(state=DeliveryState.FAILED, downgraded_at__isnull=False).update(
                state=DeliveryState.DOWNGRADED, next_attempt_at=due, expires_at=expires_at, finished_at=None)
            n += rows.filter(state=DeliveryState.FAILED).update(
                state=DeliveryState.PENDING, next_attempt_at=due, expires_at=expires_at, finished_at=None)
    return {"found": found, "retried": n, "skipped": skipped}
