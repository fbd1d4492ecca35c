"""Every alert change (apps.alerts.history) and every recorded delivery outcome
(apps.delivery.recording) leaves a StreamEvent in its transaction; retention purges old ones."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.alerts.firing import fire_alert
from apps.alerts.models import Alert, Silence
from apps.alerts.services import alert_acknowledge
from apps.delivery.dispatch import Outcome
from apps.delivery.models import Delivery
from apps.delivery.recording import record_outcomes
from apps.delivery.transports import AttemptResult, TransportError
from apps.ops.retention import purge_expired
from apps.stream.models import StreamEvent

from .conftest import fire_kwargs

pytestmark = pytest.mark.django_db


def _events(**filters) -> list[tuple[str, int | None, dict]]:
    return [(e.type, e.alert_id, e.data) for e in StreamEvent.objects.filter(**filters).order_by("id")]


def test_created_then_acknowledged_alert_streams_created_and_updated(tenant, plugin):
    with transaction.atomic():
        alert = fire_alert(**fire_kwargs(tenant, plugin)).alert
    alert_acknowledge(alert_id=alert.pk, actor=None, note="on it")

    kinds = [(t, d["kind"]) for t, _, d in _events(alert_id=alert.pk)]
    assert kinds[0] == ("alert.created", "created")
    assert ("alert.updated", "acknowledged") in kinds
    created = _events(alert_id=alert.pk, type="alert.created")[0][2]
    assert created == {"alert_id": alert.pk, "state": "OPEN", "severity": "critical", "title": "Checkout error burst",
                       "delivery_state": created["delivery_state"], "kind": "created", "message": "25 occurrences"}
    acked = [d for t, _, d in _events(alert_id=alert.pk) if d["kind"] == "acknowledged"][0]
    assert (acked["state"], acked["message"]) == ("ACKNOWLEDGED", "on it")
    assert set(StreamEvent.objects.values_list("tenant_id", flat=True)) == {tenant.pk}


def test_an_alert_born_silenced_is_streamed_too(tenant, plugin):
    now = timezone.now()
    Silence.objects.create(tenant=tenant, matchers={}, starts_at=now - timedelta(minutes=1),
                           ends_at=now + timedelta(hours=1), reason="maintenance")
    alert = fire_alert(**fire_kwargs(tenant, plugin)).alert
    assert alert.state == "SUPPRESSED"
    [(type_, _, data)] = _events(alert_id=alert.pk)
    assert (type_, data["state"], data["kind"]) == ("alert.created", "SUPPRESSED", "created")


def test_delivery_feedback_streams_the_alerts_new_delivery_state(tenant, plugin):
    alert = fire_alert(**fire_kwargs(tenant, plugin)).alert
    now = timezone.now()
    d = Delivery.objects.create(tenant=tenant, alert=alert, channel="email", event_type="alert.triggered",
                                msg_id="msg_stream_1", body=b"{}", recipients=["ops@example.com"], state="SENDING",
                                claim_token="held", claimed_at=now, created_at=now,
                                expires_at=now + timedelta(hours=1))
    d = Delivery.objects.select_related("tenant", "endpoint").get(pk=d.pk)
    before = StreamEvent.objects.count()

    states = record_outcomes([Outcome(d, now, result=AttemptResult(status_code=250, latency_ms=5))])

    assert states == ["DELIVERED"]
    new = _events(id__gt=StreamEvent.objects.order_by("id").values_list("id", flat=True)[before - 1])
    assert ("delivery.updated", alert.pk, {"delivery_id": d.pk, "alert_id": alert.pk, "channel": "email",
                                           "state": "DELIVERED", "attempt": 1, "status_code": 250}) in new


def test_a_lost_claim_streams_no_delivery_event(tenant):
    now = timezone.now()
    d = Delivery.objects.create(tenant=tenant, channel="email", event_type="alert.triggered", msg_id="msg_stream_2",
                                body=b"{}", recipients=["ops@example.com"], state="SENDING", claim_token="held",
                                claimed_at=now, created_at=now, expires_at=now + timedelta(hours=1))
    d = Delivery.objects.select_related("tenant", "endpoint").get(pk=d.pk)
    Delivery.objects.filter(pk=d.pk).update(claim_token="someone-else")

    assert record_outcomes([Outcome(d, now, error=TransportError("refused", status_code=451))]) == [""]
    assert _events(type="delivery.updated") == []


def test_retention_purges_events_past_the_keep_time(tenant, settings):
    settings.STREAM_RETENTION_DAYS = 7
    now = timezone.now()
    old, fresh = StreamEvent.objects.bulk_create([
        StreamEvent(tenant=tenant, type="alert.updated", created_at=now - timedelta(days=8)),
        StreamEvent(tenant=tenant, type="alert.updated", created_at=now - timedelta(days=6)),
    ])
    report = purge_expired(now=now)
    assert report.removed["stream_streamevent"] == 1
    assert list(StreamEvent.objects.values_list("pk", flat=True)) == [fresh.pk]
