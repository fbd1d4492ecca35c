"""A tenant's notification policies, loaded for routing (``routing`` holds the pure matching).

``load`` reads the enabled policies of a set of tenants with their channels in a constant number of
queries (none but one when no tenant has policies), so ``outbox.notify`` can route a whole list of
notifications at once. ``preview`` answers "which destinations would this alert reach?".
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from . import routing
from .models import NotificationChannel, NotificationPolicy, WebhookEndpoint
from .notifications import Notification


def spec(policy: NotificationPolicy) -> routing.PolicySpec:
    return routing.PolicySpec(
        id=policy.pk, name=policy.name, matchers=dict(policy.matchers or {}),
        channel_ids=tuple(sorted(c.pk for c in policy.channels.all())), webhooks=policy.webhooks,
        continue_matching=policy.continue_matching, group_by=tuple(policy.group_by or ()),
        fallback_channel_ids=tuple(sorted(c.pk for c in policy.fallback_channels.all())))


@dataclass
class Routing:
    """The routing state of some tenants: ordered policy specs, the policies and channels they use."""

    specs: dict[int, list[routing.PolicySpec]] = field(default_factory=dict)
    policies: dict[int, NotificationPolicy] = field(default_factory=dict)
    channels: dict[int, NotificationChannel] = field(default_factory=dict)

    def route(self, notification: Notification, at: datetime) -> routing.Route:
        specs = self.specs.get(notification.tenant_id)
        if not specs:
            return routing.Route(webhooks=True)
        return routing.route(specs, notification.payload, at)


def load(tenant_ids: Iterable[int]) -> Routing:
    """Enabled policies of these tenants, in order, with their channels and fallback channels."""
    rows = list(NotificationPolicy.objects.filter(tenant_id__in=list(tenant_ids), enabled=True)
                .prefetch_related("channels", "fallback_channels").order_by("tenant_id", "position", "id"))
    out = Routing()
    for policy in rows:
        out.specs.setdefault(policy.tenant_id, []).append(spec(policy))
        out.policies[policy.pk] = policy
        for channel in [*policy.channels.all(), *policy.fallback_channels.all()]:
            out.channels[channel.pk] = channel
    return out


def preview(*, tenant_id: int, alert: dict, at: datetime, event_type: str = "alert.triggered") -> dict:
    """Which destinations ``alert`` (a payload: severity, category, plugin, rule, labels, ...) would
    reach now: the policies that match, the webhook endpoints and the channels (grouped or not)."""
    from .outbox import subscribed

    routes = load([tenant_id])
    specs = routes.specs.get(tenant_id) or []
    route = routing.route(specs, alert, at) if specs else routing.Route(webhooks=True)
    webhooks = []
    if route.webhooks:
        webhooks = [{"id": e.pk, "url": e.url} for e in WebhookEndpoint.objects.filter(tenant_id=tenant_id, enabled=True)
                    .order_by("pk") if subscribed(e, event_type, str(alert.get("severity", "info")))]
    channels = []
    for channel_id, policy in route.channels.items():
        channel = routes.channels[channel_id]
        channels.append({"id": channel.pk, "name": channel.name, "kind": channel.kind, "enabled": channel.enabled,
                         "policy": policy.name, "grouped_by": list(policy.group_by),
                         "fallback_channels": list(policy.fallback_channel_ids)})
    return {"policies": [p.name for p in route.matched], "default_policy": not route.matched,
            "webhooks": webhooks, "channels": channels}
