"""End to end with a real worker process: signed delivery, retry spacing, downgrade after exactly
three failures (email + SMS received), restore, 410, Retry-After, a 30 % flaky receiver."""
from __future__ import annotations

import random
from email import message_from_bytes
from ipaddress import ip_network

import pytest
from django.test import override_settings
from standardwebhooks.webhooks import Webhook

from apps.alerts.models import Alert
from apps.delivery.models import Delivery, WebhookEndpoint
from apps.delivery.services import create_endpoint
from apps.tenants.models import FallbackContact
from tests.delivery.peers import Hook, SmsServer, SmtpServer, fire_alert
from tests.delivery.worker_support import sweeper, worker_env
from tests.support.processes import celery_worker, wait_for

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
def contacts(tenant):
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")


def triggered(hook):
    return [r for r in hook.requests if b'"type":"alert.triggered"' in r["body"]]


def test_signed_delivery_verified_by_standardwebhooks(worker, tenant, plugin):
    with Hook() as hook:
        ep, secret = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        alert = fire_alert(tenant, plugin=plugin)
        wait_for(lambda: hook.requests, timeout=60, what="webhook received")
        d = wait_for(lambda: Delivery.objects.filter(state="DELIVERED").first(), timeout=20, what="DELIVERED")
    [req] = hook.requests
    Webhook(secret).verify(req["body"], req["headers"])
    assert req["headers"]["webhook-id"] == d.msg_id
    assert req["headers"]["x-powerx-alert-id"] == str(alert.pk)
    wait_for(lambda: Alert.objects.get(pk=alert.pk).delivery_state == "DELIVERED", timeout=10, what="alert state")


def test_retries_spacing_downgrade_after_three_then_restore(worker, peers, tenant, contacts):
    smtp, sms = peers
    answer = {"status": 500}
    with Hook(lambda n, p, b: (answer["status"], {})) as hook:
        ep, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        alert = fire_alert(tenant)
        wait_for(lambda: smtp.envelopes and sms.messages, timeout=60, what="fallback email and SMS")
        d = Delivery.objects.get(channel="webhook")
        # Exactly three webhook attempts before the fallback went out.
        assert d.downgraded_at is not None
        assert Delivery.objects.get(channel="email").created_at == d.downgraded_at
        assert d.attempt_log.filter(started_at__lte=d.downgraded_at).count() == 3
        gaps = [b["at"] - a["at"] for a, b in zip(hook.requests, hook.requests[1:3])]
        assert all(0.7 <= g <= 2.5 for g in gaps), gaps  # schedule 1 s +-20 % jitter, sweeper ticks 0.2 s
        assert {r["headers"]["webhook-id"] for r in hook.requests} == {d.msg_id}
        mail = message_from_bytes(smtp.envelopes[0].content)
        assert mail["Subject"].startswith("[CRITICAL]") and smtp.envelopes[0].rcpt_tos == ["oncall@acme.example"]
        assert sms.messages[0]["To"] == "+14155550100" and len(sms.messages[0]["Body"]) <= 160
        wait_for(lambda: Alert.objects.get(pk=alert.pk).delivery_state == "DOWNGRADED", timeout=10, what="DOWNGRADED")
        ep.refresh_from_db()
        assert ep.downgraded_at and ep.failure_streak >= 3
        answer["status"] = 200  # the receiver recovers: the next retry succeeds
        wait_for(lambda: Delivery.objects.get(pk=d.pk).state == "DELIVERED", timeout=30, what="late success")
    ep.refresh_from_db()
    assert ep.failure_streak == 0 and ep.downgraded_at is None
    wait_for(lambda: Alert.objects.get(pk=alert.pk).delivery_state == "DELIVERED", timeout=10, what="DELIVERED")
    wait_for(lambda: len(smtp.envelopes) >= 2, timeout=30, what="restored notice email")
    assert any(b"restored" in e.content for e in smtp.envelopes)


def test_410_disables_endpoint(worker, peers, tenant, contacts):
    smtp, _ = peers
    with Hook(lambda n, p, b: (410, {})) as hook:
        ep, _ = create_endpoint(tenant=tenant, url=hook.url)
        fire_alert(tenant)
        wait_for(lambda: not WebhookEndpoint.objects.get(pk=ep.pk).enabled, timeout=60, what="endpoint disabled")
        d = wait_for(lambda: Delivery.objects.filter(channel="webhook", state="FAILED").first(), timeout=10,
                     what="FAILED")
        wait_for(lambda: any(b"disabled" in e.content for e in smtp.envelopes), timeout=30, what="disabled notice")
    assert d.attempts == 1 and len(hook.requests) == 1


def test_retry_after_honoured(worker, tenant):
    script = {1: (429, {"Retry-After": "3"})}
    with Hook(lambda n, p, b: script.get(n, (200, {}))) as hook:
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        fire_alert(tenant)
        wait_for(lambda: len(hook.requests) >= 2, timeout=60, what="retry after 429")
    gap = hook.requests[1]["at"] - hook.requests[0]["at"]
    assert 2.9 <= gap <= 5, gap  # the schedule says ~1 s; the receiver asked for 3


def test_flaky_receiver_still_gets_every_alert(worker, tenant, contacts):
    rng = random.Random(7)
    with Hook(lambda n, p, b: (500 if rng.random() < 0.3 else 200, {})) as hook:
        create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        alerts = [fire_alert(tenant, title=f"burst {i}") for i in range(25)]
        wait_for(lambda: Delivery.objects.filter(channel="webhook", state="DELIVERED").count() == 25, timeout=120,
                 what="all 25 delivered")
        got = {r["headers"]["webhook-id"] for r in hook.requests if r is not None}
    assert {d.msg_id for d in Delivery.objects.filter(channel="webhook")} <= got
    assert len(hook.requests) > 25  # some failed and were retried
    assert {a.pk for a in alerts} == set(Delivery.objects.filter(channel="webhook").values_list("alert_id", flat=True))
