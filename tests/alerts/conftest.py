from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth.models import Group, User

from apps.alerts.models import Alert, AlertState
from apps.delivery import outbox
from apps.core import clock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
_seq = itertools.count(1)


class Clock:
    """A controllable apps.core.clock.now."""

    def __init__(self, start: datetime):
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **kwargs) -> datetime:
        self.current += timedelta(**kwargs)
        return self.current


@pytest.fixture
def frozen(monkeypatch) -> Clock:
    fake = Clock(T0)
    monkeypatch.setattr(clock, "now", fake)
    return fake


@pytest.fixture
def events(monkeypatch):
    """Every notification handed to delivery during the test: [(alert_id, event_type, changes)]."""
    seen: list[tuple[int, str, dict]] = []
    notify = outbox.notify

    def spy(notifications, **kwargs):
        seen.extend((n.alert_id, n.event_type, n.changes) for n in notifications)
        return notify(notifications, **kwargs)

    monkeypatch.setattr(outbox, "notify", spy)
    return seen


def fire_kwargs(tenant, plugin=None, **overrides) -> dict:
    now = clock.now()
    base = dict(
        tenant=tenant, plugin=plugin, rule_key="plugin-error-burst", rule_version=1, category="error",
        severity="critical", title="Checkout error burst", summary="25 errors in 5m", recommended_action="Roll back",
        group_key={"tenant_id": tenant.slug, "plugin_id": plugin.slug if plugin else None}, labels={"env": "prod"},
        window_seconds=300, occurrences=25, first_seen=now - timedelta(minutes=4), last_seen=now,
        trace_ids=["t1", "t2"], samples=["ERROR boom"], source_received_at=now, auto_resolve_seconds=None,
    )
    base.update(overrides)
    return base


@pytest.fixture
def make_alert(db, tenant, plugin):
    """make_alert(state=..., **fields) -> an Alert row inserted directly (no service, no events)."""

    def make(**fields) -> Alert:
        now = clock.now()
        n = next(_seq)
        values = dict(tenant=tenant, plugin=plugin, rule_key="plugin-error-burst", fingerprint=f"fp-{n}",
                      severity="critical", state=AlertState.OPEN, title=f"Alert {n}", summary="errors",
                      count=1, first_seen=now, last_seen=now, created_at=now, updated_at=now)
        values.update(fields)
        return Alert.objects.create(**values)

    return make


@pytest.fixture
def make_user(db):
    def make(username: str = "alice", *, staff: bool = False, groups: tuple[str, ...] = ()) -> User:
        user = User.objects.create_user(username=username, password="x" * 12, is_staff=staff)
        for name in groups:
            user.groups.add(Group.objects.get(name=name))
        return user

    return make
