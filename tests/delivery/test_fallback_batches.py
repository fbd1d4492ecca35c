"""Fallbacks are written per batch: a storm's alerts to a downgraded endpoint, or a batch of
deliveries downgraded together, read the contacts once and insert their fallback rows once, and a
tenant without contacts is logged once per batch, not once per alert."""
from __future__ import annotations

import logging
from ipaddress import ip_network

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.payload import notification_for
from apps.core.fastpath import COPY_MIN_ROWS
from apps.delivery import dispatch, outbox
from apps.delivery.models import Delivery, WebhookEndpoint
from apps.delivery.services import create_endpoint
from apps.tenants.models import FallbackContact
from tests.delivery.peers import Hook

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_RETRY_SCHEDULE = [10, 30, 120]
    settings.DELIVERY_DOWNGRADE_AFTER_FAILURES = 3


def _alerts(tenant, count: int, tag: str) -> list:
    now = timezone.now()
    out = []
    for i in range(count):
        alert = Alert.objects.create(
            tenant=tenant, fingerprint=f"fp-{tag}-{i}", severity="critical", title=f"{tag} {i}",
            summary="42 errors", count=42, window_seconds=300, first_seen=now, last_seen=now,
            created_at=now, updated_at=now)
        out.append(notification_for(alert, "alert.triggered"))
    return out


def _touching(queries, table: str, verb: str) -> int:
    return sum(1 for q in queries if q["sql"].lstrip().upper().startswith(verb) and f'"{table}"' in q["sql"])


def test_alerts_to_downgraded_endpoints_get_their_fallbacks_in_one_read_and_one_insert(
        tenant, other_tenant, caplog):
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")
    for t in (tenant, other_tenant):  # the other tenant has no contact at all
        ep, _ = create_endpoint(tenant=t, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
        WebhookEndpoint.objects.filter(pk=ep.pk).update(failure_streak=3, downgraded_at=timezone.now())

    def notify(notifications):
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            reports = outbox.notify(notifications)
        return queries, reports

    notify(_alerts(tenant, COPY_MIN_ROWS, "warm-up"))  # the id sequence's name is looked up once
    # As many rows as make bulk_insert COPY them, as the many below do.
    few, _ = notify(_alerts(tenant, COPY_MIN_ROWS // 2, "few") + _alerts(other_tenant, COPY_MIN_ROWS // 2, "few-o"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="apps.delivery.outbox"):
        mine, theirs = _alerts(tenant, 12, "many"), _alerts(other_tenant, 9, "many-other")
        many, reports = notify(mine + theirs)

    assert len(many) == len(few)  # 21 alerts cost what 4 do
    assert _touching(many, "tenants_fallbackcontact", "SELECT") == 1
    assert _touching(many, "delivery_delivery", "INSERT") == 1  # all fallbacks (the webhook rows: COPY)
    assert [r.rows_state for r in reports] == ["DOWNGRADED"] * 21
    for n in mine:
        webhook = Delivery.objects.get(alert_id=n.alert_id, channel="webhook")
        assert webhook.state == "DOWNGRADED"
        fallbacks = {d.channel: d for d in Delivery.objects.filter(alert_id=n.alert_id, source=webhook)}
        assert sorted(fallbacks) == ["email", "sms"]
        assert fallbacks["email"].recipients == ["oncall@acme.example"]
        assert fallbacks["sms"].recipients == ["+14155550100"]
        assert n.payload["title"] in bytes(fallbacks["email"].body).decode()
    assert not Delivery.objects.filter(alert_id__in=[n.alert_id for n in theirs]).exclude(channel="webhook").exists()
    warnings = [r for r in caplog.records if r.getMessage() == "no active fallback contact"]
    assert [(r.tenant_id, r.alerts, r.alert_ids) for r in warnings] == [
        (other_tenant.pk, 9, [n.alert_id for n in theirs])]


def test_deliveries_downgraded_in_one_batch_get_their_fallbacks_in_one_insert(tenant, other_tenant):
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=other_tenant, kind="sms", value="+14155550199")
    with Hook(lambda n, p, b: (500, {})) as hook:
        for t in (tenant, other_tenant):
            create_endpoint(tenant=t, url=hook.url, event_types=["alert.triggered"])
        notifications = _alerts(tenant, 5, "a") + _alerts(other_tenant, 4, "b")
        with transaction.atomic():
            outbox.notify(notifications)
        Delivery.objects.update(attempts=2)  # the third failure downgrades each row
        ids = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as queries:
            assert dispatch.process(ids) == 9
    assert _touching(queries, "tenants_fallbackcontact", "SELECT") == 1
    fallback_inserts = [q for q in queries if q["sql"].startswith('INSERT INTO "delivery_delivery"')]
    assert len(fallback_inserts) == 1
    for n in notifications:
        webhook = Delivery.objects.get(alert_id=n.alert_id, channel="webhook")
        assert (webhook.state, webhook.attempts) == ("DOWNGRADED", 3)
        [fallback] = Delivery.objects.filter(source=webhook)
        expected = ("email", ["oncall@acme.example"]) if n.tenant_id == tenant.pk else ("sms", ["+14155550199"])
        assert (fallback.channel, fallback.recipients, fallback.alert_id) == (*expected, n.alert_id)
