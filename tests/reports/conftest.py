from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from django.test import Client

from apps.ingest.models import EventRecord
from apps.tenants.models import Plugin
from tests.alerts.conftest import frozen, make_alert  # noqa: F401  (shared factories)
from tests.console.conftest import _empty_cache, login, make_console_user  # noqa: F401
from tests.ops.support import parse

_seq = itertools.count(1)


@pytest.fixture
def second_plugin(tenant) -> Plugin:
    return Plugin.objects.create(tenant=tenant, slug="payments", name="Payments")


@pytest.fixture
def make_record(db):
    """make_record(tenant, plugin, ts, message, trace_id=..., fields=...) -> an EventRecord written
    RAW (no intake masking), so the export check is what stands between it and the download."""

    def make(tenant, plugin, ts: datetime, message: str, *, trace_id: str | None = None, fields: dict | None = None,
             level: str = "ERROR", rule_keys: list[str] | None = None) -> EventRecord:
        return EventRecord.objects.create(
            tenant=tenant, plugin=plugin, ts=ts, level=level, level_no=40 if level == "ERROR" else 30,
            message=message, trace_id=trace_id, fields=fields or {}, rule_keys=rule_keys or [],
            received_at=ts + timedelta(milliseconds=next(_seq)))

    return make


def scrape() -> dict:
    response = Client().get("/metrics")
    assert response.status_code == 200, response.content[:300]
    return parse(response.content.decode())
