"""The batch paths: one doorbell per transaction, a batch recorded together (mixed outcomes), and the
batch's one feedback report (one timeline + audit row per alert whose state changed, none otherwise)."""
from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.db import transaction
from django.utils import timezone

from apps.alerts.models import TimelineEntry
from apps.audit.models import AuditEvent
from apps.delivery import dispatch, feedback, outbox
from apps.delivery.feedback import DeliveryReport
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.delivery.services import create_endpoint
from tests.delivery.peers import Hook, fire_alert

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_RETRY_SCHEDULE = [10, 30, 120]
    settings.DELIVERY_DOWNGRADE_AFTER_FAILURES = 3


def test_one_doorbell_per_transaction_in_batches(settings, monkeypatch):
    settings.DELIVERY_BATCH_SIZE = 2
    sent = []
    monkeypatch.setattr(outbox, "_enqueue", lambda ids: sent.append(list(ids)))
    with transaction.atomic():
        outbox.ring([1, 2])
        outbox.ring([3])
        try:
            with transaction.atomic():
                outbox.ring([4])
                raise RuntimeError
        except RuntimeError:
            pass
        outbox.ring([5])
        assert sent == []
    # pytest-django wraps the test in a transaction: run what would run on commit.
    for _sids, func, _robust in transaction.get_connection().run_on_commit:
        func()
    # One callback for the transaction; ids rung inside a rolled-back savepoint may ride along
    # (their rows are gone, the claim is a no-op), nothing rung at the outer level is lost.
    assert len(sent) == 1 and {1, 2, 3, 5} <= set(sent[0])


def test_enqueue_chunks_by_batch_size(settings, monkeypatch):
    from apps.delivery import tasks

    settings.DELIVERY_BATCH_SIZE = 2
    batches = []
    monkeypatch.setattr(tasks.deliver_batch, "delay", lambda ids, **kw: batches.append(ids))
    monkeypatch.setattr(tasks.deliver_attempt, "delay", lambda i: batches.append([i]))
    outbox._enqueue([1, 2, 3, 4, 5])
    assert batches == [[1, 2], [3, 4], [5]]


def test_batch_with_mixed_outcomes_records_each_attempt_and_state(tenant, other_tenant):
    with Hook() as ok_hook, Hook(lambda n, p, b: (500, {})) as bad_hook, Hook(lambda n, p, b: (410, {})) as gone:
        ok_ep, _ = create_endpoint(tenant=tenant, url=ok_hook.url, event_types=["alert.triggered"])
        bad_ep, _ = create_endpoint(tenant=other_tenant, url=bad_hook.url, event_types=["alert.triggered"])
        ok_alerts = [fire_alert(tenant, title=f"ok {i}") for i in range(3)]
        bad_alerts = [fire_alert(other_tenant, title=f"bad {i}") for i in range(2)]
        ids = list(Delivery.objects.order_by("pk").values_list("pk", flat=True))
        assert len(ids) == 5
        assert dispatch.process(ids) == 5  # one batch: claimed, sent concurrently, recorded together
        assert len(ok_hook.ids()) == 3 and len(bad_hook.ids()) == 2

        attempts = DeliveryAttempt.objects.order_by("delivery_id")
        assert [(a.delivery_id, a.number, a.success) for a in attempts] == [
            (d.pk, 1, d.endpoint_id == ok_ep.pk) for d in Delivery.objects.order_by("pk")]
        assert {a.status_code for a in attempts if not a.success} == {500}
        for d in Delivery.objects.filter(endpoint=ok_ep):
            assert (d.state, d.attempts, d.claim_token, d.last_status_code) == ("DELIVERED", 1, "", 200)
            assert d.delivered_at and d.finished_at and d.next_attempt_at is None
        for d in Delivery.objects.filter(endpoint=bad_ep):
            assert (d.state, d.attempts, d.last_status_code) == ("PENDING", 1, 500) and d.next_attempt_at
        bad_ep.refresh_from_db()
        assert bad_ep.failure_streak == 2 and bad_ep.downgraded_at is None
        for a in ok_alerts:
            a.refresh_from_db()
            assert a.delivery_state == "DELIVERED"
            assert TimelineEntry.objects.filter(alert=a, kind="delivery", data__delivery_state="DELIVERED").count() == 1
            assert AuditEvent.objects.filter(action="alert.delivery_state", target_id=str(a.pk),
                                             data__delivery_state="DELIVERED").count() == 1
        for a in bad_alerts:
            a.refresh_from_db()
            assert a.delivery_state == "PENDING"  # unchanged: no new timeline line
            assert not TimelineEntry.objects.filter(alert=a, data__delivery_state="DELIVERED").exists()

        # Third failure in the next batch (with a success for the other tenant in it): the streak
        # carries over, the endpoint is downgraded exactly once; a 410 in the same batch disables.
        gone_ep, _ = create_endpoint(tenant=tenant, url=gone.url, event_types=["alert.triggered"])
        late = fire_alert(tenant, title="late")
        bad_late = fire_alert(other_tenant, title="bad late")
        Delivery.objects.filter(state="PENDING").update(next_attempt_at=timezone.now())
        dispatch.process(list(Delivery.objects.filter(state="PENDING").order_by("pk").values_list("pk", flat=True)))
    bad_ep.refresh_from_db()
    assert bad_ep.failure_streak >= 3 and bad_ep.downgraded_at
    assert AuditEvent.objects.filter(action="webhook.downgraded").count() == 1
    gone_ep.refresh_from_db()
    assert not gone_ep.enabled and AuditEvent.objects.filter(action="webhook.disabled").count() == 1
    assert Delivery.objects.get(alert=late, endpoint=ok_ep).state == "DELIVERED"
    assert Delivery.objects.get(alert=late, endpoint=gone_ep).state == "FAILED"
    assert Delivery.objects.get(alert=bad_late, endpoint=bad_ep).state == "DOWNGRADED"
    late.refresh_from_db()
    assert late.delivery_state == "FAILED"  # one endpoint delivered, the other failed for good
    assert DeliveryAttempt.objects.count() == 5 + 2 + 2 + 1  # every attempt is a row


def test_batch_report_writes_one_row_per_changed_alert(tenant):
    create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    a1, a2, a3 = (fire_alert(tenant, title=f"a{i}") for i in range(3))
    Delivery.objects.filter(alert__in=[a1, a2]).update(state="DELIVERED")
    Delivery.objects.filter(alert=a3).update(state="FAILED")
    a2.delivery_state = "DELIVERED"
    a2.save(update_fields=["delivery_state"])
    timeline, audit = TimelineEntry.objects.count(), AuditEvent.objects.count()
    feedback.report([
        DeliveryReport(a1.pk, {"delivery_id": 11}),
        DeliveryReport(a2.pk, {"delivery_id": 12}),  # unchanged
        DeliveryReport(a3.pk, {"delivery_id": 13}),
    ])
    assert TimelineEntry.objects.count() == timeline + 2
    assert AuditEvent.objects.count() == audit + 2
    for alert, state, delivery_id in ((a1, "DELIVERED", 11), (a3, "FAILED", 13)):
        alert.refresh_from_db()
        assert alert.delivery_state == state
        entry = TimelineEntry.objects.filter(alert=alert).latest("id")
        assert entry.kind == "delivery" and entry.data == {"delivery_state": state, "delivery_id": delivery_id}
        ev = AuditEvent.objects.filter(target_id=str(alert.pk), action="alert.delivery_state").latest("id")
        assert ev.tenant_id == tenant.pk and ev.actor_label == "system" and ev.data["delivery_state"] == state
    assert not TimelineEntry.objects.filter(alert=a2, data__delivery_id=12).exists()
