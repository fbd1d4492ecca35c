"""The outbox: delivery rows written in the transaction of the change they announce.

``notify`` runs inside the alert service's transaction (the alerts app calls it with the change's
``Notification``), so an alert change and its deliveries commit together or not at all. The broker only rings a
doorbell on commit; if that message is lost, the sweeper finds the due rows anyway.

Inside ``first_attempts_here`` (a detect task, DELIVERY_SEND_FROM_DETECT) the webhook rows are written
claimed instead (SENDING, the task's claim token, ``claimed_at`` by the database's clock) and handed
to the task once its transaction commits; it sends them itself (``dispatch.send_claimed``). If the
task dies before recording them, the claim's lease ends and the sweeper sends them again, as for
any claimed row (at-least-once). A rolled-back transaction hands over nothing.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction

from apps.core import clock, on_commit
from apps.core.fastpath import bulk_insert, instance
from apps.core.vocabulary import NOTIFY_EVENTS, severity_rank
from apps.tenants.models import FallbackContact

from . import fastpath, grouping, messages, policies, routing
from .feedback import DeliveryReport
from .models import (DUE_STATES, GROUPABLE_KINDS, Channel, Delivery, DeliveryState, NotificationChannel,
                     NotificationPolicy, WebhookEndpoint)
from .notifications import Notification
from .state import states_of

logger = logging.getLogger("apps.delivery")


def new_msg_id() -> str:
    """A webhook-id: unique, stable for the life of the delivery (receivers dedupe on it)."""
    return f"msg_{uuid.uuid4().hex}"


def subscribed(endpoint: WebhookEndpoint, event_type: str, severity: str) -> bool:
    """Does ``endpoint`` want ``event_type`` for an alert of ``severity``?"""
    return endpoint.enabled and event_type in (endpoint.event_types or []) and severity_rank(severity) >= severity_rank(
        endpoint.min_severity)


def tenants_listening(tenant_ids: Iterable[int], event_type: str) -> set[int]:
    """Of ``tenant_ids``, those that may have a destination for ``event_type``: an enabled endpoint
    subscribed to it, or an enabled policy (which may route it to a channel). Two small queries, so a
    caller can skip building notifications nobody would receive (a storm's alert.updated for every
    delivered alert, when endpoints subscribe to alert.triggered only)."""
    tenant_ids = list(set(tenant_ids))
    if not tenant_ids:
        return set()
    found = {tenant_id for tenant_id, types in WebhookEndpoint.objects.filter(tenant_id__in=tenant_ids, enabled=True)
             .values_list("tenant_id", "event_types") if event_type in (types or [])}
    rest = [t for t in tenant_ids if t not in found]
    if rest:
        found.update(NotificationPolicy.objects.filter(tenant_id__in=rest, enabled=True)
                     .values_list("tenant_id", flat=True).distinct())
    return found


def expires(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.DELIVERY_MAX_AGE_SECONDS)


def batch_size() -> int:
    """Deliveries per deliver task (DELIVERY_BATCH_SIZE): a batch is claimed, sent and recorded together."""
    return max(1, int(getattr(settings, "DELIVERY_BATCH_SIZE", 100)))


def _enqueue(ids: list[int]) -> None:
    from .tasks import deliver_attempt, deliver_batch

    size = batch_size()
    try:
        if len(ids) == 1:
            deliver_attempt.delay(ids[0])
            return
        for i in range(0, len(ids), size):
            deliver_batch.delay(ids[i:i + size])
    except Exception:  # noqa: BLE001 - the doorbell is best effort by design
        logger.warning("could not enqueue deliveries; the sweeper will pick them up",
                       extra={"delivery_ids": ids[:20]}, exc_info=True)


class _Doorbell:
    """The ids rung in one transaction: enqueued together (in DELIVERY_BATCH_SIZE chunks) on commit."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.done = False

    def __call__(self) -> None:
        self.done = True
        _enqueue(self.ids)


def ring(ids: Iterable[int]) -> None:
    """Enqueue a first attempt for ``ids`` once the current transaction commits.

    All ids rung inside one transaction share one on_commit callback, which enqueues them as
    ``deliver.batch`` tasks of DELIVERY_BATCH_SIZE (so 100 alerts written in one transaction cost
    a few broker messages, not 100). Ids whose rows were rolled back with a savepoint may still be
    enqueued: the claim finds nothing and the task is a no-op. A broker failure is logged, not
    raised: the rows are due and the sweeper will send them.
    """
    ids = list(ids)
    if not ids:
        return
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        _enqueue(ids)
        return
    # This transaction's doorbell, unless a rolled-back savepoint took it (apps.core.on_commit).
    bell = next((b for b in reversed(on_commit.pending(_Doorbell)) if not b.done), None)
    if bell is None:
        bell = _Doorbell()
        transaction.on_commit(bell)
    bell.ids.extend(ids)


class FirstAttempts:
    """The claimed rows a detect task wrote, once their transaction committed (``first_attempts_here``)."""

    def __init__(self) -> None:
        self.claim_token = uuid.uuid4().hex
        self.rows: list[Delivery] = []


_first_attempts: ContextVar[FirstAttempts | None] = ContextVar("first_attempts", default=None)


@contextmanager
def first_attempts_here() -> Iterator[FirstAttempts | None]:
    """Within: webhook rows are written claimed and collected for the caller to send (None when
    DELIVERY_SEND_FROM_DETECT is off: every row is rung as usual)."""
    if not settings.DELIVERY_SEND_FROM_DETECT:
        yield None
        return
    collected = FirstAttempts()
    token = _first_attempts.set(collected)
    try:
        yield collected
    finally:
        _first_attempts.reset(token)


class _Handover:
    """On commit, these claimed rows join the task's ``FirstAttempts`` (a rollback drops them)."""

    def __init__(self, collected: FirstAttempts, rows: list[Delivery]) -> None:
        self.collected, self.rows = collected, rows

    def __call__(self) -> None:
        self.collected.rows.extend(self.rows)


def behind_breaker(row: Delivery) -> bool:
    """A new row for a downgraded webhook endpoint: written parked, neither claimed as written nor
    rung. It waits for the sweeper's probes (``breaker``), its fallback sent at once."""
    return row.channel == Channel.WEBHOOK and row.endpoint_id is not None and row.endpoint.downgraded_at is not None


def _claim_as_written(rows: list[Delivery]) -> None:
    """Inside ``first_attempts_here``: the webhook rows due now, except those behind a breaker,
    marked claimed before they are written (the others are rung); nothing elsewhere."""
    collected = _first_attempts.get()
    if collected is None:
        return
    claimed = [r for r in rows if r.channel == Channel.WEBHOOK and r.state in DUE_STATES and not behind_breaker(r)]
    if claimed:
        claimed_at = fastpath.database_now()
        for r in claimed:
            r.state, r.claim_token, r.claimed_at = DeliveryState.SENDING, collected.claim_token, claimed_at
        transaction.on_commit(_Handover(collected, claimed))


def _endpoints_by_tenant(tenant_ids: set[int], endpoint_ids: Iterable[int] | None) -> dict[int, list[WebhookEndpoint]]:
    """The enabled endpoints of these tenants (restricted to ``endpoint_ids`` when given), one query."""
    qs = WebhookEndpoint.objects.filter(tenant_id__in=tenant_ids, enabled=True).order_by("id")
    if endpoint_ids is not None:
        qs = qs.filter(pk__in=list(endpoint_ids))
    out: dict[int, list[WebhookEndpoint]] = {}
    for e in qs:
        out.setdefault(e.tenant_id, []).append(e)
    return out


def notify(notifications: Sequence[Notification], *,
           endpoint_ids: Iterable[int] | None = None) -> list[DeliveryReport]:
    """Route each notification through its tenant's policies (``routing``) and write its deliveries:
    one per subscribed webhook endpoint (when the route includes webhooks: the default), one per
    routed channel (rendered now and frozen), or an entry in a notification group for grouped chat
    channels (flushed later by the sweeper). Rings the doorbell on commit. Returns one
    ``DeliveryReport`` per alert whose delivery state these rows decide (alert.triggered /
    alert.escalated with at least one row): the caller records the state (PENDING, or DOWNGRADED at
    once when a destination is currently downgraded: that alert goes to fallback immediately).

    Must run inside the caller's transaction: the alert change and its deliveries commit together or
    not at all (the outbox). A constant number of queries for the whole list (endpoints, policies,
    channels, one INSERT). DB errors propagate and roll the change back with them. ``endpoint_ids``
    restricts the destinations to those webhook endpoints (reconcile_alerts fills in missing
    deliveries with it).
    """
    if not notifications:
        return []
    tenant_ids = {n.tenant_id for n in notifications}
    endpoints = _endpoints_by_tenant(tenant_ids, endpoint_ids)
    routes = policies.load(tenant_ids) if endpoint_ids is None else policies.Routing()
    now = clock.now()
    rows: list[Delivery] = []
    plan: list[tuple[Notification, list[Delivery]]] = []
    for n in notifications:
        route = routes.route(n, now)
        mine = []
        if route.webhooks:
            targets = [e for e in endpoints.get(n.tenant_id, ()) if subscribed(e, n.event_type, n.severity)]
            mine += _webhook_rows(n, targets, now)
        mine += _channel_rows(n, route, routes, now)
        rows += mine
        plan.append((n, mine))
    _claim_as_written(rows)
    if rows:
        bulk_insert(rows)
    # The claimed ones go out from here; those behind a breaker wait for its probes.
    to_ring = [r.pk for r in rows if r.state != DeliveryState.SENDING and not behind_breaker(r)]
    reports = []
    downgraded: dict[str, list[tuple[Delivery, Notification]]] = {}  # by what is downgraded
    for n, mine in plan:
        first = next((r for r in mine if r.downgraded_at), None)
        if first is not None:
            downgraded.setdefault(what_failed(first), []).append((first, n))
        counted = [r for r in mine if r.event_type in NOTIFY_EVENTS]
        if counted:
            reports.append(DeliveryReport(n.alert_id, {
                "event_type": n.event_type, "endpoints": [r.endpoint_id for r in counted if r.endpoint_id],
                "channels": [r.notification_channel_id for r in counted if r.notification_channel_id],
                "delivery_ids": [r.pk for r in counted]}, rows_state=states_of(mine).get(n.alert_id)))
    for what, pairs in downgraded.items():
        to_ring += [f.pk for f in create_fallbacks_for_many(
            pairs, now=now, reason=f"your {what} is downgraded after repeated failures")]
    ring(to_ring)
    return reports


def what_failed(row: Delivery) -> str:
    """What failed, as a fallback message names it."""
    return "webhook endpoint" if row.channel == Channel.WEBHOOK else f"{row.channel} channel"


def _webhook_rows(n: Notification, targets: list[WebhookEndpoint], now: datetime) -> list[Delivery]:
    if not targets:
        return []
    body = messages.webhook_body(n.event_type, n.payload_json, now)
    notifying = n.event_type in NOTIFY_EVENTS
    expires_at = expires(now)
    return [
        instance(Delivery, dict(
            tenant_id=n.tenant_id, alert_id=n.alert_id, channel=Channel.WEBHOOK,
            event_type=n.event_type, msg_id=new_msg_id(), body=body, plugin_id=n.plugin_id,
            state=DeliveryState.DOWNGRADED if notifying and e.downgraded_at else DeliveryState.PENDING,
            downgraded_at=now if notifying and e.downgraded_at else None,
            # Behind a breaker: parked (no attempt scheduled) until a probe gets through.
            next_attempt_at=None if e.downgraded_at else now, created_at=now, expires_at=expires_at,
        ), {"endpoint": e})
        for e in targets
    ]


def _channel_rows(n: Notification, route: routing.Route, routes: policies.Routing, now: datetime) -> list[Delivery]:
    """Rows for the route's channels; grouped chat channels take the alert into their group instead."""
    if not route.channels:
        return []
    from .transports import channels as channel_kinds  # transports load their settings lazily

    payload = n.payload
    notifying = n.event_type in NOTIFY_EVENTS
    out = []
    for channel_id, policy in route.channels.items():
        channel = routes.channels.get(channel_id)
        if channel is None or not channel.enabled:
            continue
        if policy.group_by and channel.kind in GROUPABLE_KINDS and notifying:
            grouping.add(policy=routes.policies[policy.id], channel=channel, notification=n, payload=payload, now=now)
            continue
        request = channel_kinds.render(channel.kind, n.event_type, payload, templates=channel.templates or None,
                                       changes=n.changes)
        if request is None:  # nothing to say on this channel about this change
            continue
        out.append(Delivery(
            tenant_id=n.tenant_id, alert_id=n.alert_id, channel=channel.kind, notification_channel=channel,
            event_type=n.event_type, msg_id=new_msg_id(), body=request.encode(), payload=n.payload_json,
            fallback_channels=list(policy.fallback_channel_ids), plugin_id=n.plugin_id,
            state=DeliveryState.DOWNGRADED if notifying and channel.downgraded_at else DeliveryState.PENDING,
            downgraded_at=now if notifying and channel.downgraded_at else None,
            next_attempt_at=now, created_at=now, expires_at=expires(now),
        ))
    return out


def create_fallbacks_for_many(downgraded: Sequence[tuple[Delivery, Notification]], *, now: datetime,
                              reason: str) -> list[Delivery]:
    """The fallbacks of downgraded rows, each with the notification it carried: the row's policy
    fallback channels (enabled, of its tenant), else its tenant's email/SMS contacts.

    One read of the channels, one of the contacts and one INSERT for the whole list, and one warning
    per tenant left without any: a storm's alerts to a downgraded endpoint cost its batch a constant
    number of queries, not three per alert. The caller rings the doorbell."""
    from .transports import channels as channel_kinds

    wanted = {pk for row, _ in downgraded for pk in row.fallback_channels or ()}
    enabled = ({c.pk: c for c in NotificationChannel.objects.filter(pk__in=wanted, enabled=True)}
               if wanted else {})
    out: list[Delivery] = []
    to_contacts: list[tuple[Notification, Delivery]] = []
    unrouted: dict[int, list[int | None]] = {}
    for row, n in downgraded:
        mine = []
        payload = n.payload if row.fallback_channels else None  # parsed once per alert
        for pk in sorted(row.fallback_channels or ()):
            channel = enabled.get(pk)
            if channel is None or channel.tenant_id != row.tenant_id:
                continue
            request = channel_kinds.render(channel.kind, n.event_type, payload, templates=channel.templates or None)
            if request is None:
                continue
            mine.append(Delivery(
                tenant_id=row.tenant_id, alert_id=row.alert_id, source=row, channel=channel.kind,
                notification_channel=channel, event_type=n.event_type, msg_id=new_msg_id(),
                body=request.encode(), payload=n.payload_json, plugin_id=row.plugin_id,
                next_attempt_at=now, created_at=now, expires_at=expires(now)))
        if row.fallback_channels and not mine:
            unrouted.setdefault(row.tenant_id, []).append(row.alert_id)
        if mine:
            out += mine
        else:
            to_contacts.append((n, row))
    _warn_per_tenant("no enabled fallback channel", unrouted)
    out += _contact_fallbacks(to_contacts, now=now, reason=reason, channels=(Channel.EMAIL, Channel.SMS))
    if out:
        Delivery.objects.bulk_create(out)
    return out


def create_fallbacks(*, notification: Notification, source: Delivery | None, now: datetime,
                     reason: str, channels: tuple[str, ...] = (Channel.EMAIL, Channel.SMS)) -> list[Delivery]:
    """Write one fallback delivery per channel that has active contacts for the notification's tenant.

    Returns the rows (possibly none: a tenant without contacts is logged, not an error). The caller
    rings the doorbell. Bodies are rendered now from the notification's payload and frozen.
    """
    rows = _contact_fallbacks([(notification, source)], now=now, reason=reason, channels=channels)
    if rows:
        Delivery.objects.bulk_create(rows)
    return rows


def _contact_fallbacks(wanted: Sequence[tuple[Notification, Delivery | None]], *, now: datetime, reason: str,
                       channels: tuple[str, ...]) -> list[Delivery]:
    """Unsaved rows: per notification, one per channel with active contacts of its tenant (one read
    for all tenants); a warning per tenant without any."""
    if not wanted:
        return []
    contacts: dict[tuple[int, str], list[str]] = {}
    for tenant_id, kind, value in FallbackContact.objects.filter(
            tenant_id__in={n.tenant_id for n, _ in wanted}, active=True,
            kind__in=channels).values_list("tenant_id", "kind", "value"):
        contacts.setdefault((tenant_id, kind), []).append(value)
    rows: list[Delivery] = []
    missing: dict[int, list[int | None]] = {}
    for n, source in wanted:
        payload = n.payload
        mine = []
        for channel in channels:
            recipients = contacts.get((n.tenant_id, channel))
            if not recipients:
                continue
            fields = (messages.alert_email(payload, reason=reason) if channel == Channel.EMAIL
                      else messages.alert_sms(payload))
            mine.append(Delivery(
                tenant_id=n.tenant_id, alert_id=n.alert_id, source=source, channel=channel,
                event_type=n.event_type, msg_id=new_msg_id(), body=messages.encode(fields),
                recipients=sorted(recipients), plugin_id=n.plugin_id, next_attempt_at=now,
                created_at=now, expires_at=expires(now),
            ))
        if not mine:
            missing.setdefault(n.tenant_id, []).append(n.alert_id)
        rows += mine
    _warn_per_tenant("no active fallback contact", missing, channel=",".join(channels))
    return rows


def _warn_per_tenant(message: str, alerts_by_tenant: dict[int, list[int | None]], **extra: str) -> None:
    """One warning per tenant (not per alert: a storm to a downgraded endpoint would log thousands),
    naming how many alerts and the first few."""
    for tenant_id, alert_ids in alerts_by_tenant.items():
        logger.warning(message, extra={"tenant_id": tenant_id, "alert_id": alert_ids[0], "alerts": len(alert_ids),
                                       "alert_ids": alert_ids[:20], **extra})


def notification_of(delivery: Delivery) -> Notification:
    """The notification a delivery was written for, from what it froze (for its fallback): a channel
    row's payload, or a webhook body's ``data``."""
    data = orjson.loads(bytes(delivery.payload)) if delivery.payload else messages.decode(delivery.body)["data"]
    return Notification.build(event_type=delivery.event_type, alert_id=delivery.alert_id,
                              tenant_id=delivery.tenant_id, plugin_id=delivery.plugin_id,
                              severity=str(data.get("severity", "")), payload=data)


def create_notice(*, tenant_id: int, subject: str, text: str, event_type: str) -> Delivery | None:
    """Queue an email notice to the tenant's active email contacts (endpoint disabled/restored).

    Returns None when the tenant has no email contact. Rings the doorbell on commit.
    """
    emails = sorted(FallbackContact.objects.filter(tenant_id=tenant_id, active=True, kind=Channel.EMAIL)
                    .values_list("value", flat=True))
    if not emails:
        return None
    now = clock.now()
    row = Delivery.objects.create(
        tenant_id=tenant_id, channel=Channel.EMAIL, event_type=event_type, msg_id=new_msg_id(),
        body=messages.encode(messages.notice_email(subject, text)), recipients=emails,
        next_attempt_at=now, created_at=now, expires_at=expires(now),
    )
    ring([row.pk])
    return row


def page(*, notification: Notification, emails: Sequence[str] = (), phones: Sequence[str] = (),
         channels: Sequence[str] = (), reason: str) -> list[Delivery]:
    """Send ``notification`` to people and named channels now (an escalation step paging someone):
    one email delivery per address in ``emails``, one SMS per number in ``phones`` (rendered from the
    payload and frozen, like fallbacks) and one delivery per enabled NotificationChannel of the
    tenant named in ``channels``. A channel that already has a delivery of this notification (the
    routing policies sent it the same escalation) is not sent twice; unknown or disabled names are
    logged and skipped. Returns the rows written; rings the doorbell on commit.

    Must run inside the caller's transaction, like ``notify``. Paged email/SMS rows are not routed
    deliveries: they do not decide the alert's delivery state and have no fallback of their own.
    """
    n = notification
    now = clock.now()
    payload = n.payload
    rows = [Delivery(tenant_id=n.tenant_id, alert_id=n.alert_id, channel=kind, event_type=n.event_type,
                     msg_id=new_msg_id(), body=messages.encode(fields), recipients=[address],
                     plugin_id=n.plugin_id, next_attempt_at=now, created_at=now, expires_at=expires(now))
            for kind, addresses, fields in (
                (Channel.EMAIL, emails, messages.alert_email(payload, reason=reason) if emails else None),
                (Channel.SMS, phones, messages.alert_sms(payload) if phones else None))
            for address in dict.fromkeys(addresses)]
    rows += _paged_channel_rows(n, list(dict.fromkeys(channels)), now)
    if rows:
        Delivery.objects.bulk_create(rows)
        ring([r.pk for r in rows])
    return rows


def _paged_channel_rows(n: Notification, names: list[str], now: datetime) -> list[Delivery]:
    if not names:
        return []
    from .transports import channels as channel_kinds

    found = {c.name: c for c in NotificationChannel.objects.filter(tenant_id=n.tenant_id, name__in=names)}
    skipped = [name for name in names if name not in found or not found[name].enabled]
    if skipped:
        logger.warning("escalation names unknown or disabled channels", extra={
            "alert_id": n.alert_id, "tenant_id": n.tenant_id, "channel": ",".join(skipped)})
    wanted = [found[name] for name in names if name not in skipped]
    payload = n.payload
    # The routing policies may already have sent this very escalation (same alert, event type and
    # escalation level in the frozen payload) to one of these channels: don't send it twice.
    level = payload.get("escalation_level")
    already = {cid for cid, sent in Delivery.objects.filter(
        alert_id=n.alert_id, event_type=n.event_type, notification_channel__in=wanted, payload__isnull=False,
    ).values_list("notification_channel_id", "payload") if orjson.loads(bytes(sent)).get("escalation_level") == level}
    out = []
    for channel in wanted:
        if channel.pk in already:
            continue
        request = channel_kinds.render(channel.kind, n.event_type, payload, templates=channel.templates or None,
                                       changes=n.changes)
        if request is None:
            continue
        out.append(Delivery(
            tenant_id=n.tenant_id, alert_id=n.alert_id, channel=channel.kind, notification_channel=channel,
            event_type=n.event_type, msg_id=new_msg_id(), body=request.encode(), payload=n.payload_json,
            plugin_id=n.plugin_id, next_attempt_at=now, created_at=now, expires_at=expires(now)))
    return out
