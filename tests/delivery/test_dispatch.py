"""The outbox and the attempt path in-process, against a real local receiver (no worker here:
``dispatch.process`` is what the deliver tasks call). Timing is moved by making rows due."""
from __future__ import annotations

import hashlib
import hmac
import json
from ipaddress import ip_network

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from apps.alerts.models import Alert, TimelineEntry
from apps.audit.models import AuditEvent
from apps.delivery import dispatch, selectors, state
from apps.delivery.models import Delivery, DeliveryAttempt, WebhookEndpoint
from apps.delivery.services import create_endpoint, rotate_secret
from apps.tenants.models import FallbackContact
from tests.delivery.peers import SmsServer, emit, fire_alert, peer_settings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_RETRY_SCHEDULE = [10, 30, 120]
    settings.DELIVERY_DOWNGRADE_AFTER_FAILURES = 3


@pytest.fixture
def sms(settings):
    with SmsServer() as server:
        for k, v in peer_settings(sms=server).items():
            setattr(settings, k, v)
        yield server


@pytest.fixture
def contacts(tenant):
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")


def endpoint(tenant, url, **kw):
    return create_endpoint(tenant=tenant, url=url, **kw)


def run_due(alert_id=None):
    """Make every pending row due now and process it (what the sweeper + worker do)."""
    qs = Delivery.objects.filter(state__in=["PENDING", "DOWNGRADED"])
    qs.update(next_attempt_at=timezone.now())
    return dispatch.process(list(qs.values_list("pk", flat=True)))


def test_outbox_one_row_per_subscribed_endpoint(tenant, other_tenant, plugin):
    from tests.delivery.peers import Hook

    with Hook() as hook:
        a, _ = endpoint(tenant, hook.url)
        endpoint(tenant, hook.url, min_severity="emergency")  # severity too low for it
        endpoint(tenant, hook.url, event_types=["alert.updated"])  # not subscribed to triggered
        endpoint(other_tenant, hook.url)  # another tenant
        alert = fire_alert(tenant, plugin=plugin)
    [d] = Delivery.objects.all()
    assert (d.endpoint_id, d.event_type, d.state, d.attempts) == (a.pk, "alert.triggered", "PENDING", 0)
    assert d.msg_id.startswith("msg_")
    body = json.loads(bytes(d.body))
    assert body["type"] == "alert.triggered" and body["data"]["id"] == alert.pk
    alert.refresh_from_db()
    assert alert.delivery_state == "PENDING"


def test_no_endpoint_keeps_state_none(tenant):
    alert = fire_alert(tenant)
    assert not Delivery.objects.exists()
    alert.refresh_from_db()
    assert alert.delivery_state == "NONE"


def test_delivered_signed_and_verifiable(tenant, plugin):
    from tests.delivery.peers import Hook

    with Hook() as hook:
        ep, secret = endpoint(tenant, hook.url)
        alert = fire_alert(tenant, plugin=plugin)
        assert run_due() == 1
    [req] = hook.requests
    Webhook(secret).verify(req["body"], req["headers"])
    # The README recipe: hex HMAC-SHA256 of the raw body keyed with the whole secret string.
    expected = "sha256=" + hmac.new(secret.encode(), req["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req["headers"]["x-powerx-signature"], expected)
    assert req["headers"]["x-powerx-alert-id"] == str(alert.pk)
    d = Delivery.objects.get(event_type="alert.triggered")
    assert (d.state, d.attempts) == ("DELIVERED", 1)
    assert req["headers"]["webhook-id"] == d.msg_id
    # DELIVERED is announced as alert.updated to endpoints subscribed to updates (this one is).
    assert json.loads(bytes(Delivery.objects.get(event_type="alert.updated").body))["data"]["delivery_state"] == "DELIVERED"
    [att] = DeliveryAttempt.objects.all()
    assert att.success and att.status_code == 200 and att.channel == "webhook"
    alert.refresh_from_db()
    assert alert.delivery_state == "DELIVERED"
    assert TimelineEntry.objects.filter(alert=alert, kind="delivery").count() == 2  # PENDING, DELIVERED
    assert AuditEvent.objects.filter(action="alert.delivery_state", target_id=str(alert.pk)).count() == 2


def test_delivered_is_not_announced_to_a_tenant_nobody_hears_updates_of(tenant, other_tenant, plugin):
    from apps.delivery.models import NotificationPolicy
    from apps.delivery.outbox import tenants_listening
    from apps.tenants.models import Tenant
    from tests.delivery.peers import Hook

    third = Tenant.objects.create(name="third", slug="third")
    with Hook() as hook:
        endpoint(tenant, hook.url, event_types=["alert.triggered"])
        endpoint(other_tenant, hook.url, event_types=["alert.triggered", "alert.updated"])
        disabled, _ = endpoint(third, hook.url, event_types=["alert.updated"])
        WebhookEndpoint.objects.filter(pk=disabled.pk).update(enabled=False)
        assert tenants_listening([tenant.pk, other_tenant.pk, third.pk], "alert.updated") == {other_tenant.pk}
        NotificationPolicy.objects.create(tenant=third, name="p", webhooks=True)  # may route it to a channel
        assert tenants_listening([tenant.pk, other_tenant.pk, third.pk], "alert.updated") == {other_tenant.pk, third.pk}

        alert = fire_alert(tenant, plugin=plugin)
        assert run_due() == 1
    alert.refresh_from_db()
    assert alert.delivery_state == "DELIVERED"
    assert not Delivery.objects.filter(event_type="alert.updated").exists()
    assert len(hook.requests) == 1


def test_escalated_title_prefixed(tenant):
    from tests.delivery.peers import Hook

    with Hook() as hook:
        endpoint(tenant, hook.url)
        alert = fire_alert(tenant, title="Disk full")
        emit(alert, "alert.escalated")
    row = Delivery.objects.get(event_type="alert.escalated")
    assert json.loads(bytes(row.body))["data"]["title"] == "[ESCALATED] Disk full"


def test_failures_schedule_retries_and_downgrade_at_three(tenant, contacts, sms, mailoutbox):
    from tests.delivery.peers import Hook

    with Hook(lambda n, p, b: (500, {})) as hook:
        ep, _ = endpoint(tenant, hook.url)
        alert = fire_alert(tenant)
        for expected_attempts in (1, 2):
            before = timezone.now()
            run_due()
            d = Delivery.objects.get(channel="webhook", event_type="alert.triggered")
            assert (d.state, d.attempts) == ("PENDING", expected_attempts)
            delay = (d.next_attempt_at - before).total_seconds()
            base = [10, 30][expected_attempts - 1]
            assert base * 0.8 - 1 <= delay <= base * 1.2 + 1
        assert not mailoutbox and not sms.messages
        run_due()  # third consecutive failure: downgrade
        d = Delivery.objects.get(channel="webhook", event_type="alert.triggered")
        assert (d.state, d.attempts) == ("DOWNGRADED", 3) and d.downgraded_at
        ep.refresh_from_db()
        assert ep.failure_streak == 3 and ep.downgraded_at
        assert Delivery.objects.filter(channel__in=["email", "sms"], source=d).count() == 2
        alert.refresh_from_db()
        assert alert.delivery_state == "DOWNGRADED"
        dispatch.process(list(Delivery.objects.filter(channel__in=["email", "sms"]).values_list("pk", flat=True)))
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["oncall@acme.example"]
    assert mailoutbox[0].subject.startswith("[CRITICAL]")
    [text] = sms.messages
    assert text["To"] == "+14155550100" and len(text["Body"]) <= 160 and f"/alerts/{alert.pk}" in text["Body"]
    assert AuditEvent.objects.filter(action="webhook.downgraded").count() == 1
    # alert.updated with DOWNGRADED went out to endpoints subscribed to it (this one is).
    assert Delivery.objects.filter(event_type="alert.updated", channel="webhook").exists()


def test_downgraded_endpoint_sends_new_alerts_to_fallback_at_once_and_restores(tenant, contacts, sms, mailoutbox):
    from tests.delivery.peers import Hook

    answers = {"status": 500}
    with Hook(lambda n, p, b: (answers["status"], {})) as hook:
        ep, _ = endpoint(tenant, hook.url, event_types=["alert.triggered"])
        WebhookEndpoint.objects.filter(pk=ep.pk).update(failure_streak=3, downgraded_at=timezone.now())
        alert = fire_alert(tenant)
        d = Delivery.objects.get(channel="webhook", event_type="alert.triggered")
        assert d.state == "DOWNGRADED"
        assert Delivery.objects.filter(channel__in=["email", "sms"], alert=alert).count() == 2
        alert.refresh_from_db()
        assert alert.delivery_state == "DOWNGRADED"
        answers["status"] = 200
        run_due()
    d.refresh_from_db()
    assert d.state == "DELIVERED"  # late success counts
    ep.refresh_from_db()
    assert ep.failure_streak == 0 and ep.downgraded_at is None
    alert.refresh_from_db()
    assert alert.delivery_state == "DELIVERED"
    assert AuditEvent.objects.filter(action="webhook.restored").count() == 1
    notice = Delivery.objects.get(event_type="webhook.restored")
    assert notice.recipients == ["oncall@acme.example"]


def test_410_disables_endpoint_fails_delivery_and_tells_tenant(tenant, contacts, sms):
    from tests.delivery.peers import Hook

    with Hook(lambda n, p, b: (410, {})) as hook:
        ep, _ = endpoint(tenant, hook.url, event_types=["alert.triggered"])
        alert = fire_alert(tenant)
        run_due()
    d = Delivery.objects.get(channel="webhook", event_type="alert.triggered")
    assert (d.state, d.attempts) == ("FAILED", 1)
    ep.refresh_from_db()
    assert not ep.enabled and "410" in ep.disabled_reason
    assert AuditEvent.objects.filter(action="webhook.disabled").count() == 1
    assert Delivery.objects.filter(event_type="webhook.disabled", channel="email").count() == 1
    # The alert still reaches the tenant: fallback sent once.
    assert Delivery.objects.filter(source=d).count() == 2
    alert.refresh_from_db()
    assert alert.delivery_state == "FAILED"


def test_retry_after_is_honoured(tenant):
    from tests.delivery.peers import Hook

    with Hook(lambda n, p, b: (429, {"Retry-After": "300"})) as hook:
        endpoint(tenant, hook.url)
        fire_alert(tenant)
        before = timezone.now()
        run_due()
    d = Delivery.objects.get(event_type="alert.triggered")
    assert 299 <= (d.next_attempt_at - before).total_seconds() <= 302


def test_gives_up_after_max_age_with_fallback(tenant, contacts, settings):
    from tests.delivery.peers import Hook

    settings.DELIVERY_MAX_AGE_SECONDS = 1
    settings.DELIVERY_DOWNGRADE_AFTER_FAILURES = 10
    with Hook(lambda n, p, b: (500, {})) as hook:
        endpoint(tenant, hook.url, event_types=["alert.triggered"])
        fire_alert(tenant)
        for _ in range(4):
            run_due()
    d = Delivery.objects.get(channel="webhook", event_type="alert.triggered")
    assert (d.state, d.attempts) == ("FAILED", 4)  # never before the first attempt + 3 retries
    assert d.downgraded_at is not None and Delivery.objects.filter(source=d).count() == 2


def test_updated_deliveries_do_not_change_alert_state(tenant):
    from tests.delivery.peers import Hook

    with Hook(lambda n, p, b: (500, {})) as hook:
        endpoint(tenant, hook.url, event_types=["alert.updated"])
        alert = fire_alert(tenant)
        emit(alert, "alert.updated", {"state": "ACKNOWLEDGED"})
        for _ in range(3):
            run_due()
    alert.refresh_from_db()
    assert alert.delivery_state == "NONE"
    assert Delivery.objects.get().state == "PENDING"  # still retried, no fallback for updates
    assert not Delivery.objects.filter(channel__in=["email", "sms"]).exists()


def test_rotation_signs_with_both_secrets(tenant):
    from tests.delivery.peers import Hook

    with Hook() as hook:
        ep, old = endpoint(tenant, hook.url)
        new, _ = rotate_secret(endpoint=ep)
        fire_alert(tenant)
        run_due()
    req = hook.requests[0]
    for secret in (old, new):
        Webhook(secret).verify(req["body"], req["headers"])
    assert len(req["headers"]["x-powerx-signature"].split(",")) == 2


def test_claim_is_exclusive_and_stuck_rows_are_reclaimed(tenant, settings):
    from tests.delivery.peers import Hook

    with Hook() as hook:
        endpoint(tenant, hook.url)
        fire_alert(tenant)
    d = Delivery.objects.get()
    assert len(dispatch.claim([d.pk])) == 1
    assert dispatch.claim([d.pk]) == []  # held
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 0
    assert len(dispatch.claim([d.pk])) == 1  # lease over: the sender is presumed dead


def test_state_aggregate():
    assert state.aggregate([]) is None
    assert state.aggregate(["DELIVERED", "DOWNGRADED"]) == "DOWNGRADED"
    assert state.aggregate(["DELIVERED", "PENDING"]) == "PENDING"
    assert state.aggregate(["DELIVERED", "DELIVERED"]) == "DELIVERED"
    assert state.aggregate(["DELIVERED", "FAILED"]) == "FAILED"


def test_selectors_and_statistics(tenant):
    from tests.delivery.peers import Hook

    script = {1: 500}
    with Hook(lambda n, p, b: (script.get(n, 200), {})) as hook:
        endpoint(tenant, hook.url, event_types=["alert.triggered"])
        a1 = fire_alert(tenant)
        fire_alert(tenant)
        run_due()
        run_due()
    [row] = selectors.deliveries_for_alert(a1.pk)
    assert [a.number for a in row.attempt_log.all()] in ([1], [1, 2])
    stats = selectors.delivery_statistics(tenant_ids=[tenant.pk], since=timezone.now() - timezone.timedelta(hours=1))
    assert stats["total"] == 2 and stats["delivered"] == 2 and stats["retries"] == 1
    assert stats["initial_success_rate"] == 0.5 and stats["cumulative_success_rate"] == 1.0
    assert Alert.objects.filter(delivery_state="DELIVERED").count() == 2
