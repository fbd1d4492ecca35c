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


def test_receiver_down_then_back_downgrades_then_delivers_under_the_same_webhook_id(clean_redis, tmp_path):
    report, facts = scenarios.receiver_down_then_back(tmp_path)
    during, n = facts["during"], facts["alerts"]
    assert during["requests"] == 0  # refused: nothing reached the receiver while it was down
    # Every delivery refused at least once; behind the breaker the endpoint, not each delivery, is
    # retried: 3 failures downgraded it and it refused 4 probes more before the receiver came back.
    assert min(during["refused_attempts"]) >= 1
    assert during["endpoint"]["downgraded_at"] is not None and during["endpoint"]["failure_streak"] >= 3 + 4
    assert during["emails"] >= n and during["sms"] >= n  # every alert reached the fallback peers
    assert facts["downgraded_at_once"] == 2  # fired while the endpoint was downgraded: fallback at once
    _ok(report)  # includes: no successful request repeated, every id belongs to its delivery row
    assert report.delivered == report.downgraded == report.deliveries_expected == n
    assert facts["states"] == [DeliveryState.DELIVERED]
    assert facts["ok_ids"] == facts["msg_ids"]  # one 2xx per delivery, under the row's webhook-id
    assert facts["after"] == {"failure_streak": 0, "downgraded_at": None}  # endpoint restored
    assert facts["restored_audits"] == 1


def test_clock_steps_forward_and_back_send_and_escalate_once(clean_redis, tmp_path):
    report, facts = scenarios.clock_steps(tmp_path)
    assert facts["retry_in_s"] > 1000  # before the step the retries were half an hour away
    # forward 3 h: 8 retries and 8 escalation messages (4 alerts x 2 endpoints), each alert one level
    # although its policy repeats every 5 min
    assert facts["forward"] == {"levels": [1, 1, 1, 1], "requests": 16}, facts["forward_detail"]
    assert facts["back_quiet"] == {"levels": [1, 1, 1, 1], "requests": 0}  # stepped back: nothing again
    assert facts["back"] == {"levels": [0, 0, 1, 1, 1, 1], "requests": 4}  # new alerts delivered, not escalated
    assert facts["levels"] == [1] * 6 and facts["escalated_audits"] == 6
    assert facts["retried"] == [(500, 200)] and facts["others"] == [(200,)]  # each message sent once more at most
    _ok(report)  # escalation level exactly 1 everywhere, no duplicate request
    assert report.alerts_fired == 6 and report.delivered == report.deliveries_expected == 24


def test_burst_10x_sheds_with_429_and_loses_nothing(clean_redis, tmp_path):
    report, facts = scenarios.burst(tmp_path)
    print({k: facts[k] for k in ("answers", "latency_ms", "drain_s")}, report.row())  # shown with -s
    refusals = facts["refusals"]
    assert not [e for e in refusals if e["status"] is None or e["status"] >= 500], refusals[:5]  # no 5xx, no timeout
    assert any(e["phase"] == "burst" for e in refusals), facts["answers"]  # it did shed
    for e in refusals:
        assert e["status"] == 429 and e["retry_after"] and int(e["retry_after"]) > 0, e
        assert e["code"] in {"backlogged", "rate_limited"}, e
    _ok(report)
    assert report.accepted == facts["generated"]  # the shipper got everything accepted in the end
    assert report.counted == (facts["generated"] - 10) * 8 // 100 and report.alerts_fired == 4
    # Detection latency (batch received -> processed) is back to normal after the burst: no backlog left.
    before, after = facts["latency_ms"]["before"], facts["latency_ms"]["after"]
    assert after["p95"] <= max(4 * before["p95"], 1000), facts["latency_ms"]
