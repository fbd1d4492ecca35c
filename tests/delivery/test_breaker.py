"""A downgraded webhook endpoint is behind a circuit breaker: its new rows are neither sent by the
detect task nor rung, the sweeper sends it one probe at a time (DELIVERY_DOWNGRADED_IN_FLIGHT), and
the probe that succeeds restores it and rings the rows that waited. Other endpoints' rows are swept
as before, and a disabled endpoint's rows still reach their end."""
from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network

import pytest
from django.utils import timezone

from apps.delivery import dispatch
from apps.delivery import tasks as deliver_tasks
from apps.delivery.models import Delivery, WebhookEndpoint
from apps.delivery.services import create_endpoint
from tests.delivery.peers import Hook, fire_alert

# The doorbells ring on commit; the sweep runs on SQLite too (make run).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_databases]


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.DELIVERY_RETRY_SCHEDULE = [10, 30, 120]
    settings.DELIVERY_DOWNGRADE_AFTER_FAILURES = 3
    settings.DELIVERY_DOWNGRADED_IN_FLIGHT = 1


@pytest.fixture
def enqueued(monkeypatch):
    """The deliver tasks that would have been published, as (ids, claim token); none runs by itself."""
    tasks: list[tuple[list[int], str | None]] = []
    monkeypatch.setattr(deliver_tasks.deliver_batch, "delay",
                        lambda ids, claim_token=None: tasks.append((list(ids), claim_token)))
    monkeypatch.setattr(deliver_tasks.deliver_attempt, "delay", lambda i: tasks.append(([i], None)))
    return tasks


def run(task: tuple[list[int], str | None]) -> None:
    ids, token = task
    dispatch.process(ids, token)


def downgrade(endpoint: WebhookEndpoint) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failure_streak=3, downgraded_at=timezone.now())


def test_one_probe_at_a_time_then_the_waiting_rows_go_out_once_it_answers(tenant, other_tenant, enqueued):
    answer = {"status": 500}
    with Hook(lambda n, p, b: (answer["status"], {})) as hook, Hook() as healthy:
        endpoint, _ = create_endpoint(tenant=tenant, url=hook.url, event_types=["alert.triggered"])
        downgrade(endpoint)
        rows = []
        for i in range(5):
            alert = fire_alert(tenant, title=f"waiting {i}")
            rows.append(Delivery.objects.get(alert=alert))
        assert [(r.state, r.attempts) for r in rows] == [("DOWNGRADED", 0)] * 5
        assert enqueued == []  # not rung (and this tenant has no fallback contact to ring)

        # Another tenant's retry is due at the same time: the breaker does not hold it up.
        other, _ = create_endpoint(tenant=other_tenant, url=healthy.url, event_types=["alert.triggered"])
        fire_alert(other_tenant)
        enqueued.clear()
        retry = Delivery.objects.get(endpoint=other)
        Delivery.objects.filter(pk=retry.pk).update(state="PENDING", attempts=1, next_attempt_at=timezone.now())

        assert dispatch.sweep() == {"claimed": 2, "stuck": 0}
        [(claimed, token)] = enqueued
        assert sorted(claimed) == sorted([rows[0].pk, retry.pk])  # the oldest waiting row is the probe
        assert dispatch.sweep() == {"claimed": 0, "stuck": 0}  # none more while the probe is in flight
        run(enqueued.pop())
        assert len(hook.requests) == 1 and len(healthy.requests) == 1
        assert Delivery.objects.get(pk=rows[0].pk).attempts == 1  # failed; its retry waits 10 s

        assert dispatch.sweep() == {"claimed": 1, "stuck": 0}
        assert enqueued[-1][0] == [rows[1].pk]  # the next oldest
        answer["status"] = 200
        run(enqueued.pop())
        endpoint.refresh_from_db()
        assert endpoint.downgraded_at is None and endpoint.failure_streak == 0  # restored
        # The restore rang the rows that waited (not the failed probe: its retry is not due yet).
        [(released, token)] = enqueued
        assert released == [r.pk for r in rows[2:]] and token is None
        run(enqueued.pop())
    assert [Delivery.objects.get(pk=r.pk).state for r in rows] == ["DOWNGRADED"] + ["DELIVERED"] * 4
    assert len(hook.requests) == 5 and len(set(hook.ids())) == 5  # each row sent once so far


def test_a_silent_endpoint_holds_one_send_whatever_its_backlog(tenant, settings, enqueued):
    settings.DELIVERY_DOWNGRADED_IN_FLIGHT = 2
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    for i in range(30):
        fire_alert(tenant, title=f"backlog {i}")
    assert dispatch.sweep() == {"claimed": 2, "stuck": 0}
    assert dispatch.sweep() == {"claimed": 0, "stuck": 0}
    assert Delivery.objects.filter(endpoint=endpoint, state="SENDING").count() == 2
    assert Delivery.objects.filter(endpoint=endpoint, state="DOWNGRADED", claim_token="").count() == 28


def test_a_disabled_endpoint_s_rows_are_still_swept_to_their_end(tenant, enqueued):
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    fire_alert(tenant)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    row = Delivery.objects.get(endpoint=endpoint)
    Delivery.objects.filter(pk=row.pk).update(attempts=1, next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert dispatch.sweep() == {"claimed": 1, "stuck": 0}
    run(enqueued.pop())
    row.refresh_from_db()
    assert row.state == "FAILED"  # the disabled endpoint's row ends instead of waiting forever


def test_rows_still_pending_when_their_endpoint_is_downgraded_get_their_fallback_at_the_next_sweep(
        tenant, enqueued):
    from apps.alerts.models import Alert
    from apps.tenants.models import FallbackContact

    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    early = [fire_alert(tenant, title=f"early {i}") for i in range(3)]
    # They failed once or twice before the endpoint was downgraded (by other rows' failures): each
    # retry is due later than the rows written after the downgrade, so probing in order would reach
    # them last, their alerts unreached meanwhile.
    Delivery.objects.filter(alert__in=early).update(state="PENDING", attempts=1,
                                                    next_attempt_at=timezone.now() + timedelta(seconds=10))
    downgrade(endpoint)
    later = [fire_alert(tenant, title=f"later {i}") for i in range(2)]
    enqueued.clear()
    dispatch.sweep()
    for alert in early:
        row = Delivery.objects.get(alert=alert, channel="webhook")
        assert (row.state, row.attempts) == ("DOWNGRADED", 1) and row.downgraded_at
        [fallback] = Delivery.objects.filter(source=row)
        assert fallback.channel == "email" and fallback.recipients == ["oncall@acme.example"]
        assert Alert.objects.get(pk=alert.pk).delivery_state == "DOWNGRADED"
    rung = {pk for ids, _ in enqueued for pk in ids}
    assert {d.pk for d in Delivery.objects.filter(channel="email", alert__in=early)} <= rung
    # Each later alert got its own fallback when it was written, once.
    assert Delivery.objects.filter(channel="email", alert__in=later).count() == 2
    dispatch.sweep()
    assert Delivery.objects.filter(channel="email").count() == 5  # nothing sent twice


def test_rows_that_waited_past_their_max_age_behind_the_breaker_end_failed(tenant, enqueued):
    from apps.alerts.models import Alert

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    downgrade(endpoint)
    old, young = fire_alert(tenant, title="old"), fire_alert(tenant, title="young")
    Delivery.objects.filter(alert=old).update(expires_at=timezone.now() - timedelta(seconds=1),
                                              next_attempt_at=timezone.now() + timedelta(hours=1))
    dispatch.sweep()
    row = Delivery.objects.get(alert=old)
    assert (row.state, row.next_attempt_at) == ("FAILED", None) and row.finished_at
    assert "max age" in row.last_error
    assert Alert.objects.get(pk=old.pk).delivery_state == "FAILED"
    assert Delivery.objects.get(alert=young).state in ("DOWNGRADED", "SENDING")  # waiting, or the probe


def test_a_row_that_expires_before_it_was_ever_downgraded_gets_its_fallback_first(tenant, monkeypatch, enqueued):
    from apps.delivery import breaker
    from apps.tenants.models import FallbackContact

    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    # One row per sweep: the expired row must not lose its fallback to an older late row that
    # fills the sweep's share of rows to downgrade.
    monkeypatch.setattr(breaker, "CHUNK", 1)
    older = fire_alert(tenant, title="older, not expired")
    alert = fire_alert(tenant)
    Delivery.objects.filter(alert=older).update(state="PENDING", attempts=1,
                                                next_attempt_at=timezone.now() + timedelta(minutes=1))
    Delivery.objects.filter(alert=alert).update(state="PENDING", attempts=2, last_error="HTTP 500",
                                                expires_at=timezone.now() - timedelta(seconds=1),
                                                next_attempt_at=timezone.now() + timedelta(minutes=5))
    downgrade(endpoint)
    dispatch.sweep()
    row = Delivery.objects.get(alert=alert, channel="webhook")
    assert row.state == "FAILED" and row.downgraded_at  # reached by fallback before it gave up
    assert row.last_error.startswith("gave up") and row.last_error.endswith("the last error: HTTP 500")
    assert Delivery.objects.filter(source=row, channel="email").count() == 1


def test_a_failing_upkeep_does_not_stop_the_sweep_for_other_endpoints(tenant, other_tenant, monkeypatch, enqueued):
    from apps.delivery import recording

    endpoint, _ = create_endpoint(tenant=tenant, url="http://127.0.0.1:9/hook", event_types=["alert.triggered"])
    stuck_behind = fire_alert(tenant)
    Delivery.objects.filter(alert=stuck_behind).update(state="PENDING", attempts=1,
                                                       next_attempt_at=timezone.now() + timedelta(minutes=5))
    downgrade(endpoint)
    healthy, _ = create_endpoint(tenant=other_tenant, url="http://127.0.0.1:9/other", event_types=["alert.triggered"])
    fire_alert(other_tenant)
    retry = Delivery.objects.get(endpoint=healthy)
    Delivery.objects.filter(pk=retry.pk).update(state="PENDING", attempts=1, next_attempt_at=timezone.now())

    def broken(rows, now):
        raise ValueError("a frozen body that cannot be rendered")

    working = recording.send_fallbacks
    monkeypatch.setattr(recording, "send_fallbacks", broken)
    assert dispatch.sweep()["claimed"] == 1 and enqueued[-1][0] == [retry.pk]
    assert Delivery.objects.get(alert=stuck_behind).state == "PENDING"  # rolled back, tried again next sweep
    monkeypatch.setattr(recording, "send_fallbacks", working)
    dispatch.sweep()
    assert Delivery.objects.get(alert=stuck_behind).state == "DOWNGRADED"
