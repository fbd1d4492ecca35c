"""Grouped notifications (Alertmanager's ``group_by`` / ``group_wait`` / ``group_interval``).

When a policy groups, a chat or email channel does not get one message per alert: ``add`` puts the
alert into the group of its ``group_by`` values (one ``NotificationGroup`` row per policy, channel
and key), and the sweeper's ``flush_due`` sends each group's pending alerts as one digest, the first
time ``group_wait`` after the group formed and then at most once per ``group_interval``. So a storm
of 500 alerts in a minute becomes a handful of messages per group, each naming every alert it
carries, and nothing is dropped. Webhooks and paging channels (PagerDuty, Opsgenie) stay per alert.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction

from apps.core import clock
from apps.core.vocabulary import EVENT_TRIGGERED, SEVERITIES, severity_rank

from . import routing
from .models import Delivery, NotificationChannel, NotificationGroup, NotificationPolicy
from .notifications import Notification

logger = logging.getLogger("apps.delivery")
GROUP_EVENT = "alert.group"


def add(*, policy: NotificationPolicy, channel: NotificationChannel, notification: Notification, payload: dict,
        now: datetime) -> NotificationGroup:
    """Put one alert into its group (in the caller's transaction; the group row is locked)."""
    labels = routing.group_labels(policy.group_by, payload)
    key = routing.group_key(labels)
    group, _ = NotificationGroup.objects.get_or_create(
        policy=policy, channel=channel, group_key=key,
        defaults={"tenant_id": notification.tenant_id, "group_labels": labels})
    group = NotificationGroup.objects.select_for_update().get(pk=group.pk)
    group.pending = [*group.pending, {
        "alert_id": notification.alert_id, "event_type": notification.event_type,
        "severity": payload.get("severity"), "title": payload.get("title"), "plugin": payload.get("plugin"),
        "tenant": payload.get("tenant"), "rule": (payload.get("rule") or {}).get("key"), "url": payload.get("url"),
        "last_seen": payload.get("last_seen")}]
    if group.next_flush_at is None:
        if group.last_flush_at is None:
            group.next_flush_at = now + timedelta(seconds=policy.group_wait_seconds)
        else:
            group.next_flush_at = max(now, group.last_flush_at + timedelta(seconds=policy.group_interval_seconds))
    group.save(update_fields=["pending", "next_flush_at"])
    return group


def digest(group_labels: dict, items: list[dict]) -> dict:
    """One payload for several alerts, shaped like an alert's, so every channel kind renders it."""
    rules = sorted({i.get("rule") or "" for i in items} - {""})
    plugins = sorted({i.get("plugin") or "" for i in items} - {""})
    tenant = items[0].get("tenant") or ""
    where = f"{tenant}/{plugins[0]}" if len(plugins) == 1 else tenant
    extra = f" and {len(plugins) - 1} more plugins" if len(plugins) > 1 else ""
    title = f"{len(items)} alert{'s' if len(items) != 1 else ''}: {', '.join(rules) or 'alerts'} on {where}{extra}"
    lines = [f"#{i['alert_id']} [{i.get('severity')}] {i.get('plugin') or '-'}: {i.get('title')} {i.get('url') or ''}".rstrip()
             for i in items]
    worst = max((i.get("severity") or "info" for i in items), key=severity_rank)
    seen = sorted(i.get("last_seen") or "" for i in items)
    return {
        "id": None, "tenant": tenant, "plugin": plugins[0] if len(plugins) == 1 else None,
        "severity": worst if worst in SEVERITIES else "info", "state": "OPEN", "delivery_state": "PENDING",
        "title": title, "summary": "\n".join(lines), "recommended_action": "",
        "rule": {"key": rules[0] if len(rules) == 1 else "", "version": 0}, "category": "", "count": len(items),
        "window_seconds": 0, "first_seen": seen[0] or None, "last_seen": seen[-1] or None, "trace_ids": [],
        "samples": [], "labels": dict(group_labels), "source": "group", "annotations": {}, "value": None,
        "threshold": None, "baseline": {}, "ticket": None, "escalation_level": 0, "assignee": None,
        "url": f"{settings.CONSOLE_BASE_URL}/alerts", "alerts": [i["alert_id"] for i in items],
    }


def flush_due(*, limit: int = 100) -> int:
    """Send every group whose flush is due as one digest delivery each; returns how many were sent.

    Groups are claimed with ``skip_locked``, so two sweepers never flush one group twice.
    """
    from .outbox import expires, new_msg_id, ring
    from .transports import channels as channel_kinds

    now = clock.now()
    sent = []
    with transaction.atomic():
        groups = list(NotificationGroup.objects.select_for_update(skip_locked=True, of=("self",))
                      .filter(next_flush_at__lte=now).select_related("channel").order_by("next_flush_at")[:limit])
        for group in groups:
            items, group.pending, group.next_flush_at = group.pending, [], None
            channel = group.channel
            if items and channel.enabled:
                payload = digest(group.group_labels, items)
                request = channel_kinds.render(channel.kind, EVENT_TRIGGERED, payload, templates=channel.templates or None)
                if request is not None:
                    sent.append(Delivery.objects.create(
                        tenant_id=group.tenant_id, channel=channel.kind, notification_channel=channel,
                        event_type=GROUP_EVENT, msg_id=new_msg_id(), body=request.encode(),
                        payload=orjson.dumps(payload), next_attempt_at=now, created_at=now, expires_at=expires(now)))
                group.last_flush_at = now
            elif items:
                logger.warning("grouped alerts dropped: channel disabled",
                               extra={"tenant_id": group.tenant_id, "count": len(items), "channel": channel.pk})
            group.save(update_fields=["pending", "next_flush_at", "last_flush_at"])
        ring(d.pk for d in sent)
    return len(sent)
