"""First attempts sent by the detect task that wrote them (DELIVERY_SEND_FROM_DETECT): the webhook
rows are written claimed, handed over only once their transaction commits, sent without a deliver
task, and taken back by the sweeper after the lease if the task dies before recording them."""
from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network

import pytest
from django.db import transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.delivery import dispatch, outbox
from apps.delivery import tasks as deliver_tasks
from apps.delivery.models import Delivery, DeliveryAttempt, DeliveryState
from apps.delivery.services import create_endpoint
from apps.ingest.services import Writer, accept_events
from apps.ingest.tasks import detect_batch
from tests.delivery.peers import Hook, fire_alert
from tests.ingest.conftest import default_rules, event, no_doorbell  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_SEND_FROM_DETECT = True


@pytest.fixture
def deliver_tasks_enqueued(monkeypatch):
    """The deliver tasks that would have been published (none are run)."""
    enqueued: list = []
    monkeypatch.setattr(deliver_tasks.deliver_batch, "delay", lambda ids, **kw: enqueued.append(list(ids)))
    monkeypatch.setattr(deliver_tasks.deliver_attempt, "delay", lambda i: enqueued.append([i]))
    return enqueued


def test_a_detect_task_sends_the_first_attempts_it_wrote_without_a_deliver_task(
        tenant, default_rules, no_doorbell, deliver_tasks_enqueued):  # noqa: F811
    with Hook() as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        result = accept_events(items=[event(level="FATAL", message="out of memory: killing worker")],
                               writer=Writer(token_id=None, tenant_slug=tenant.slug))
        detect_batch(result.batch_id)
        # Sent before the task returned: nothing waits for a worker to pick a deliver task.
        assert len(hook.requests) == 1
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert (delivery.state, delivery.attempts, delivery.claim_token) == (DeliveryState.DELIVERED, 1, "")
    assert hook.requests[0]["headers"]["webhook-id"] == delivery.msg_id
    assert DeliveryAttempt.objects.get(delivery=delivery).status_code == 200
    assert Alert.objects.get(pk=delivery.alert_id).delivery_state == DeliveryState.DELIVERED
    assert deliver_tasks_enqueued == []


def test_rows_are_written_claimed_and_handed_over_only_when_their_transaction_commits(tenant, deliver_tasks_enqueued):
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    with outbox.first_attempts_here() as first:
        with transaction.atomic():
            fire_alert(tenant, title="kept")
            row = Delivery.objects.get(endpoint=endpoint)
            assert (row.state, row.claim_token) == (DeliveryState.SENDING, first.claim_token)
            assert abs(row.claimed_at - timezone.now()) < timedelta(seconds=30)  # the database's clock
            assert first.rows == []  # not before the commit
            try:
                with transaction.atomic():
                    fire_alert(tenant, title="rolled back")
                    raise RuntimeError
            except RuntimeError:
                pass
    assert [r.pk for r in first.rows] == [row.pk]  # the rolled-back savepoint's row is not handed over
    assert Delivery.objects.count() == 1 and deliver_tasks_enqueued == []  # nor rung


def test_a_downgraded_endpoint_s_row_waits_for_its_probe_and_its_fallback_is_rung(tenant, deliver_tasks_enqueued):
    from apps.tenants.models import FallbackContact

    FallbackContact.objects.create(tenant=tenant, kind="email", value="ops@acme.test")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    endpoint.downgraded_at = timezone.now()
    endpoint.save(update_fields=["downgraded_at"])
    with outbox.first_attempts_here() as first:
        alert = fire_alert(tenant)
    webhook = Delivery.objects.get(endpoint=endpoint)
    email = Delivery.objects.get(channel="email")
    # The fallback goes out at once; the webhook row waits, neither claimed nor rung, for the
    # sweeper's probe of its endpoint (tests/delivery/test_breaker.py).
    assert (webhook.state, webhook.claim_token, webhook.attempts) == (DeliveryState.DOWNGRADED, "", 0)
    assert webhook.downgraded_at is not None and first.rows == []
    assert deliver_tasks_enqueued == [[email.pk]]
    assert dispatch.sweep() == {"claimed": 1, "stuck": 0} and deliver_tasks_enqueued[-1] == [webhook.pk]
    assert Alert.objects.get(pk=alert.pk).delivery_state == DeliveryState.DOWNGRADED


def test_with_the_setting_off_rows_are_written_due_and_rung(tenant, settings, deliver_tasks_enqueued):
    settings.DELIVERY_SEND_FROM_DETECT = False
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    with outbox.first_attempts_here() as first:
        fire_alert(tenant)
    row = Delivery.objects.get(endpoint=endpoint)
    assert first is None and (row.state, row.claim_token) == (DeliveryState.PENDING, "")
    assert deliver_tasks_enqueued == [[row.pk]]


def test_rows_a_dead_task_held_are_taken_back_by_the_sweeper_after_the_lease(tenant, settings, deliver_tasks_enqueued):
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 60
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    with outbox.first_attempts_here():
        fire_alert(tenant)  # committed and handed over; the task dies before sending
    assert dispatch.sweep() == {"claimed": 0, "stuck": 0}  # the claim holds within the lease
    Delivery.objects.filter(endpoint=endpoint).update(claimed_at=timezone.now() - timedelta(seconds=61))
    assert dispatch.sweep() == {"claimed": 1, "stuck": 1}
    row = Delivery.objects.get(endpoint=endpoint)
    assert deliver_tasks_enqueued == [[row.pk]] and row.state == DeliveryState.SENDING and row.attempts == 0


def test_a_failed_first_attempt_is_retried_on_its_tenant_s_own_schedule(tenant, settings, default_rules,  # noqa: F811
                                                                        no_doorbell, deliver_tasks_enqueued):  # noqa: F811
    # Neither the claim nor the detect task loads the tenant; recording a failure must, for its schedule.
    settings.DELIVERY_RETRY_SCHEDULE = [3600]
    tenant.retry_schedule = [120]
    tenant.save(update_fields=["retry_schedule"])
    with Hook(lambda n, path, body: (500, {})) as hook:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        result = accept_events(items=[event(level="FATAL", message="out of memory: killing worker")],
                               writer=Writer(token_id=None, tenant_slug=tenant.slug))
        before = timezone.now()
        detect_batch(result.batch_id)  # the detect task's own first send
        first = Delivery.objects.get(endpoint=endpoint)
        fire_alert(tenant, title="via a deliver task")
        second = Delivery.objects.exclude(pk=first.pk).get(endpoint=endpoint)
        assert dispatch.process([second.pk]) == 1  # claimed by a deliver task
    assert len(hook.requests) == 2
    for row in Delivery.objects.filter(endpoint=endpoint):
        assert (row.state, row.attempts) == (DeliveryState.PENDING, 1)
        delay = (row.next_attempt_at - before).total_seconds()
        assert 60 < delay < 300, delay  # the tenant's 120 s (with jitter), not the default hour
