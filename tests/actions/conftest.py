from __future__ import annotations

import itertools
from ipaddress import ip_network

import pytest

from apps.alerts.models import Alert, AlertState
from apps.core import clock

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def loopback_allowed(settings):
    """Our peers listen on 127.0.0.1: open loopback the way operators open internal receivers."""
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.ACTIONS_TIMEOUT_SECONDS = 5.0
    return settings


@pytest.fixture
def make_alert(db, tenant, plugin):
    """make_alert(**fields) -> an OPEN critical alert row of ``tenant`` created now."""

    def make(**fields) -> Alert:
        now = clock.now()
        n = next(_seq)
        values = dict(tenant=tenant, plugin=plugin, rule_key="plugin-error-burst", fingerprint=f"fp-act-{n}",
                      severity="critical", state=AlertState.OPEN, title=f"Checkout error burst {n}",
                      summary="25 errors in 5m", recommended_action="Roll back", count=25, first_seen=now,
                      last_seen=now, created_at=now, updated_at=now)
        values.update(fields)
        return Alert.objects.create(**values)

    return make


@pytest.fixture
def writer(make_token, api, tenant):
    """An API client for ``tenant`` with every scope."""
    return api(make_token(tenant))
