"""Read side of the delivery app: what the API, console and statistics show. No writes here."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Prefetch, Q, QuerySet, prefetch_related_objects

from apps.core.vocabulary import NOTIFY_EVENTS

from .models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    NotificationChannel,
    NotificationPolicy,
    WebhookEndpoint,
)

# An attempt starts after its delivery is written, but by another process's clock: reads of the
# attempt log (partitioned by day of ``started_at``) bound it from a delivery's creation less this,
# so they read the days since then, not all ~100 kept. A day covers clocks that disagree or step by
# hours (bench/chaos.py steps one 8 h back); an attempt stamped earlier still is kept and counted by
# /metrics, but not listed.
ATTEMPT_CLOCK_MARGIN = timedelta(days=1)


def endpoints(*, tenant_id: int | None) -> QuerySet[WebhookEndpoint]:
    """Endpoints of one tenant, or of all tenants for ``None`` (platform)."""
    qs = WebhookEndpoint.objects.select_related("tenant")
    return qs if tenant_id is None else qs.filter(tenant_id=tenant_id)


def deliveries_for_endpoint(endpoint_id: int) -> QuerySet[Delivery]:
    """An endpoint's deliveries, newest first; a page of them gets its attempts from
    ``with_attempt_logs``."""
    return Delivery.objects.filter(endpoint_id=endpoint_id).defer("body")


def with_attempt_logs(deliveries: list[Delivery]) -> list[Delivery]:
    """``deliveries`` with their attempts prefetched (``attempt_log``, by number), in one query that
    reads only the attempt log's days from the oldest delivery's creation on (``ATTEMPT_CLOCK_MARGIN``):
    0.7 ms for a page of 50 deliveries against 4.1 ms over 99 day partitions, most of it planning."""
    if deliveries:
        since = min(d.created_at for d in deliveries) - ATTEMPT_CLOCK_MARGIN
        prefetch_related_objects(deliveries, Prefetch(
            "attempt_log", queryset=DeliveryAttempt.objects.filter(started_at__gte=since).order_by("number")))
    return deliveries


def channels(*, tenant_ids: list[int] | None) -> QuerySet[NotificationChannel]:
    """Notification channels of these tenants (None: every tenant), by tenant and name."""
    qs = NotificationChannel.objects.select_related("tenant").order_by("tenant__slug", "name")
    return qs if tenant_ids is None else qs.filter(tenant_id__in=tenant_ids)


def policies(*, tenant_ids: list[int] | None) -> QuerySet[NotificationPolicy]:
    """Routing policies of these tenants in evaluation order, channels prefetched."""
    qs = (NotificationPolicy.objects.select_related("tenant").prefetch_related("channels", "fallback_channels")
          .order_by("tenant__slug", "position", "id"))
    return qs if tenant_ids is None else qs.filter(tenant_id__in=tenant_ids)


def recent_channel_deliveries(channel_ids: list[int], per_channel: int = 3) -> dict[int, list[Delivery]]:
    """The newest ``per_channel`` deliveries of each channel, newest first (one query per channel:
    the console lists tens of channels, not thousands)."""
    return {pk: list(Delivery.objects.filter(notification_channel_id=pk).defer("body", "payload")
                     .order_by("-created_at", "-id")[:per_channel]) for pk in channel_ids}


def endpoints_subscribed_to(event_type: str) -> dict[int, list[WebhookEndpoint]]:
    """Enabled endpoints subscribed to ``event_type``, per tenant id (reconcile_alerts)."""
    out: dict[int, list[WebhookEndpoint]] = {}
    for e in WebhookEndpoint.objects.filter(enabled=True).order_by("id"):
        if event_type in (e.event_types or []):
            out.setdefault(e.tenant_id, []).append(e)
    return out


def endpoints_notified_many(alert_ids: list[int], event_type: str) -> dict[int, set[int]]:
    """The endpoints that have a webhook delivery of ``event_type`` for each of ``alert_ids``, in one
    query: {alert id: endpoint ids} (alerts with none are absent)."""
    out: dict[int, set[int]] = {}
    for alert_id, endpoint_id in (Delivery.objects.filter(alert_id__in=alert_ids, channel=Channel.WEBHOOK,
                                                          event_type=event_type).values_list("alert_id", "endpoint_id")):
        out.setdefault(alert_id, set()).add(endpoint_id)
    return out


def alerts_with_notifications_since(since: datetime) -> set[int]:
    """Alerts with a notifying webhook delivery created since ``since`` (whose state may need repair)."""
    return set(Delivery.objects.filter(created_at__gte=since, channel=Channel.WEBHOOK, event_type__in=NOTIFY_EVENTS)
               .exclude(alert_id=None).values_list("alert_id", flat=True))


def deliveries_for_alert(alert_id: int) -> list[Delivery]:
    """Every delivery of an alert (webhooks, fallback email/SMS, manual sends) oldest first, with
    ``endpoint`` joined and attempts prefetched (``attempt_log``, by number): the alert detail page
    and the diagnostic report use this. Two queries."""
    return with_attempt_logs(list(Delivery.objects.filter(alert_id=alert_id).defer("body")
                                  .select_related("endpoint", "notification_channel").order_by("created_at", "id")))


def delivery_statistics(*, tenant_ids: list[int] | None, since: datetime) -> dict:
    """Webhook delivery figures for alert notifications created since ``since``.

    ``tenant_ids`` None means every tenant. Figures (rates are None when nothing finished):
    total, delivered, failed, pending (incl. sending), downgrades (deliveries that went to fallback),
    retries (attempts beyond the first), initial_success_rate (delivered on the first attempt /
    finished), cumulative_success_rate (delivered eventually / total), fallback_sent/fallback_failed
    (email+SMS rows). Two aggregate queries.
    """
    qs = Delivery.objects.filter(created_at__gte=since)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=tenant_ids)
    hooks = qs.filter(channel=Channel.WEBHOOK, event_type__in=NOTIFY_EVENTS)
    s = hooks.aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(state=DeliveryState.DELIVERED)),
        first_try=Count("id", filter=Q(state=DeliveryState.DELIVERED, attempts=1)),
        failed=Count("id", filter=Q(state=DeliveryState.FAILED)),
        downgrades=Count("id", filter=Q(downgraded_at__isnull=False)),
        pending=Count("id", filter=Q(state__in=[DeliveryState.PENDING, DeliveryState.SENDING,
                                               DeliveryState.DOWNGRADED])),
    )
    # Bounded by time too, so only the attempt log's day partitions of the window are read.
    retries = DeliveryAttempt.objects.filter(delivery__in=hooks, number__gt=1,
                                             started_at__gte=since - ATTEMPT_CLOCK_MARGIN).count()
    fb = qs.filter(channel__in=[Channel.EMAIL, Channel.SMS]).aggregate(
        sent=Count("id", filter=Q(state=DeliveryState.DELIVERED)),
        failed=Count("id", filter=Q(state=DeliveryState.FAILED)))
    finished = s["delivered"] + s["failed"]
    return {
        "total": s["total"], "delivered": s["delivered"], "failed": s["failed"], "pending": s["pending"],
        "downgrades": s["downgrades"], "retries": retries,
        "initial_success_rate": round(s["first_try"] / finished, 4) if finished else None,
        "cumulative_success_rate": round(s["delivered"] / s["total"], 4) if s["total"] else None,
        "fallback_sent": fb["sent"], "fallback_failed": fb["failed"],
    }
