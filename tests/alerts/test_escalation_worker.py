"""End to end with a real Celery worker: an escalation step pages the on-call user by email (aiosmtpd
sink) and SMS (the Twilio-shaped server), repeats, and stops after acknowledge.

The test process drives ``escalate_due`` with a controllable clock that runs an hour behind the real
one, so the page rows it writes are already due for the worker (which reads the real clock)."""
from __future__ import annotations

import time as walltime
from datetime import date, datetime, time, timedelta, timezone
from email import message_from_bytes
from ipaddress import ip_network

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from apps.alerts import services
from apps.alerts.models import EscalationPolicy
from apps.core import clock
from apps.delivery.models import Delivery
from apps.tenants.models import ContactMethod, OnCallRotation
from tests.delivery.peers import SmsServer, SmtpServer
from tests.delivery.worker_support import sweeper, worker_env
from tests.support.processes import celery_worker, wait_for

from .conftest import Clock, fire_kwargs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def peers():
    with SmtpServer() as smtp, SmsServer() as sms:
        yield smtp, sms


@pytest.fixture
def worker(peers, clean_redis, tmp_path):
    smtp, sms = peers
    with celery_worker(name="deliver", concurrency=2, env=worker_env(smtp, sms), log_path=tmp_path / "worker.log"):
        with override_settings(WEBHOOK_ALLOWED_NETWORKS=[ip_network("127.0.0.0/8")], DELIVERY_CLAIM_LEASE_SECONDS=5):
            with sweeper():
                yield


@pytest.fixture
def behind(monkeypatch) -> Clock:
    fake = Clock(datetime.now(timezone.utc) - timedelta(hours=1))
    monkeypatch.setattr(clock, "now", fake)
    return fake


def test_escalation_pages_the_on_call_user_by_email_and_sms_and_stops_after_ack(worker, peers, tenant, plugin,
                                                                                 behind):
    smtp, sms = peers
    alice = get_user_model().objects.create_user("alice", password="x" * 12)
    ContactMethod.objects.create(user=alice, kind="email", value="alice@acme.example", verified=True)
    ContactMethod.objects.create(user=alice, kind="sms", value="+14155550101", verified=True)
    ContactMethod.objects.create(user=alice, kind="sms", value="+14155550199")  # unverified
    OnCallRotation.objects.create(tenant=tenant, name="primary", users=[alice.pk], period="weekly", handoff_weekday=0,
                                  handoff_time=time(9), timezone="Europe/Berlin", start_date=date(2026, 1, 5))
    EscalationPolicy.objects.create(tenant=tenant, severity="critical", steps=[
        {"after_minutes": 5, "channels": ["email", "sms"], "oncall": "primary", "repeat": 3}])
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert

    for n in (1, 2):
        behind.advance(minutes=5)
        assert services.escalate_due() == 1
        wait_for(lambda n=n: len(smtp.envelopes) >= n and len(sms.messages) >= n, timeout=60, what=f"page {n} received")

    mail = message_from_bytes(smtp.envelopes[0].content)
    assert smtp.envelopes[0].rcpt_tos == ["alice@acme.example"]
    assert mail["Subject"] == "[CRITICAL] [ESCALATED] Checkout error burst"
    assert "you are on call in primary for acme" in smtp.envelopes[0].content.decode()
    assert [m["To"] for m in sms.messages] == ["+14155550101", "+14155550101"]
    assert "[ESCALATED] Checkout error burst" in sms.messages[0]["Body"] and len(sms.messages[0]["Body"]) <= 160
    wait_for(lambda: Delivery.objects.filter(alert=alert, state="DELIVERED").count() == 4, timeout=30,
             what="four pages DELIVERED")

    services.alert_acknowledge(alert_id=alert.pk, actor=None)
    for _ in range(4):  # the two repeats left would have been due at +15 and +20 minutes
        behind.advance(minutes=5)
        assert services.escalate_due() == 0
    walltime.sleep(2)  # the worker and the sweeper (every 0.2 s) would have sent anything written by now
    assert len(smtp.envelopes) == 2 and len(sms.messages) == 2
    assert Delivery.objects.filter(alert=alert).count() == 4
