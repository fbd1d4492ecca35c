"""Fault scenarios on the real stack (gunicorn, Celery worker processes, sweeper processes, local
receiver / SMTP sink / SMS API), each ending with every invariant of ``invariants.py``."""
from __future__ import annotations

import pytest

from apps.delivery.models import Delivery, DeliveryState

from . import scenarios

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.reliability]


def _ok(report):
    assert not report.violations, "invariants violated:\n  " + "\n  ".join(report.violations[:40])
    assert report.lost == 0
    return report


def test_worker_sigkilled_mid_detection_counts_every_event_once(clean_redis, tmp_path):
    report, facts = scenarios.worker_killed_mid_detection(tmp_path)
    assert 2 <= facts["done_at_kill"] < facts["batches"]  # killed with work left (and usually one half-done)
    _ok(report)
    assert report.counted == 4 * 24 * 30  # every ERROR line of every batch, once
    assert report.alerts_fired == report.alerts_expected == 4


def test_worker_sigkilled_mid_delivery_resends_with_the_same_webhook_id(clean_redis, tmp_path):
    report, facts = scenarios.worker_killed_mid_delivery(tmp_path)
    _ok(report)
    assert report.delivered == report.deliveries_expected == 8
    assert report.duplicates >= 1  # the request in flight at the kill was sent again (same id: checked)


def test_redis_flushed_with_work_queued_is_recovered_from_postgres(clean_redis, tmp_path):
    report, facts = scenarios.redis_flushed(tmp_path)
    assert facts["queued"]["detect"] > 0 and facts["queued"]["deliver"] > 0, facts  # there was work to lose
    _ok(report)
    assert report.alerts_fired == 6 and report.delivered == report.deliveries_expected == 12


def test_flaky_receiver_429_timeouts_and_410(clean_redis, tmp_path):
    report, facts = scenarios.flaky_receiver(tmp_path)
    _ok(report)
    assert {500, 429, 410} <= set(facts["statuses"])
    assert facts["gone_enabled"] is False
    gone = Delivery.objects.filter(endpoint_id=facts["endpoint_ids"][1], channel="webhook")
    # Each alert to the 410 endpoint went out by email and SMS instead (checked by the invariants).
    assert gone.count() == 8 and not gone.exclude(state=DeliveryState.FAILED).exists()
    flaky = Delivery.objects.filter(endpoint_id=facts["endpoint_ids"][0], channel="webhook")
    assert flaky.count() == 8 and not flaky.exclude(state=DeliveryState.DELIVERED).exists()


def test_two_workers_and_two_sweepers_claim_and_escalate_once(clean_redis, tmp_path):
    report, _ = scenarios.two_workers_two_sweepers(tmp_path)
    _ok(report)  # escalation level exactly 1 everywhere, no duplicate request at all
    assert report.duplicates == 0 and report.delivered == report.deliveries_expected == 40


def test_database_unreachable_ingest_answers_503_and_recovers(clean_redis, tmp_path):
    report, facts = scenarios.database_outage(tmp_path)
    assert facts["stored_while_down"] == facts["stored_before"]  # nothing half-written while down
    assert facts["answers"], "no request was refused while the database was down"
    for status, retry_after, body in facts["answers"]:
        assert status == 503 and retry_after and int(retry_after) > 0, (status, retry_after, body)
        assert set(body["error"]) == {"code", "message", "details"}
    _ok(report)
