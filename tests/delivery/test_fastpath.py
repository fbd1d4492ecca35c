"""apps/delivery/fastpath.py on a real database of either kind (``both_databases``: the normal run
is PostgreSQL, tests/test_fastpaths_on_sqlite.py runs this file again on a real SQLite file)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.delivery import fastpath
from apps.delivery.dispatch import Outcome
from apps.delivery.models import Delivery, DeliveryAttempt
from apps.delivery.transports import AttemptResult, TransportError

pytestmark = [pytest.mark.django_db, pytest.mark.both_databases]


def _claimed(tenant, n: int, token: str = "held") -> list[Delivery]:
    now = timezone.now()
    rows = Delivery.objects.bulk_create([
        Delivery(tenant=tenant, channel="email", event_type="alert.triggered", msg_id=f"msg_fp_{i}",
                 body=b"{}", recipients=["ops@example.com"], state="SENDING", claim_token=token,
                 claimed_at=now, created_at=now, expires_at=now + timedelta(hours=1))
        for i in range(n)])
    return list(Delivery.objects.filter(pk__in=[r.pk for r in rows]).order_by("pk"))


def test_insert_attempts_writes_every_attempt_and_marks_only_held_successes(tenant):
    ok, lost, failed = _claimed(tenant, 3)
    Delivery.objects.filter(pk=lost.pk).update(claim_token="someone-else")  # claim taken meanwhile
    started = timezone.now()
    outcomes = [
        Outcome(ok, started, result=AttemptResult(status_code=250, latency_ms=12, response_excerpt="queued")),
        Outcome(lost, started, result=AttemptResult(status_code=250, latency_ms=7)),
        Outcome(failed, started, error=TransportError("mailbox full", status_code=452, latency_ms=30,
                                                      response_excerpt="452 4.2.2")),
    ]
    now = timezone.now()

    marked = fastpath.insert_attempts(outcomes, [1, 3, 2], now)

    assert marked == {ok.pk}
    attempts = {(a.delivery_id, a.number, a.success, a.status_code, a.latency_ms, a.error, a.response_excerpt)
                for a in DeliveryAttempt.objects.all()}
    assert attempts == {(ok.pk, 1, True, 250, 12, "", "queued"), (lost.pk, 3, True, 250, 7, "", ""),
                        (failed.pk, 2, False, 452, 30, "mailbox full", "452 4.2.2")}
    ok.refresh_from_db()
    assert (ok.state, ok.attempts, ok.claim_token, ok.last_status_code, ok.next_attempt_at) == \
        ("DELIVERED", 1, "", 250, None)
    assert ok.delivered_at == ok.finished_at == now
    lost.refresh_from_db()
    failed.refresh_from_db()
    # Rows not marked are left exactly as they were: the new holder / the failure policy decide.
    assert (lost.state, lost.claim_token, lost.attempts) == ("SENDING", "someone-else", 0)
    assert (failed.state, failed.claim_token, failed.attempts) == ("SENDING", "held", 0)


def test_insert_attempts_with_only_failures_marks_nothing(tenant):
    (row,) = _claimed(tenant, 1)
    marked = fastpath.insert_attempts([Outcome(row, timezone.now(), error=TransportError("refused"))], [1],
                                      timezone.now())
    assert marked == set()
    assert DeliveryAttempt.objects.get().success is False


def test_insert_attempts_keeps_any_text_as_written(tenant):
    # The attempt columns go in as array literals: quotes, backslashes, braces, commas, "NULL" and
    # non-ASCII text must come back unchanged, and a missing status code as NULL.
    texts = ['say "hi", {x}', "C:\\temp\\", "NULL", "", "été ✓\nline"]
    rows = _claimed(tenant, len(texts))
    started = timezone.now()
    outcomes = [Outcome(row, started, error=TransportError(text, latency_ms=1, response_excerpt=text[::-1]))
                for row, text in zip(rows, texts)]
    fastpath.insert_attempts(outcomes, [1] * len(rows), timezone.now())
    got = {a.delivery_id: (a.error, a.response_excerpt, a.status_code) for a in DeliveryAttempt.objects.all()}
    assert got == {row.pk: (text, text[::-1], None) for row, text in zip(rows, texts)}


def test_a_nul_in_an_error_or_an_answer_does_not_fail_the_batch(tenant):
    # PostgreSQL's text refuses NUL: the transport's result and error replace it, so a receiver
    # answering with one costs nothing to the other rows recorded with it.
    bad, good = _claimed(tenant, 2)
    started = timezone.now()
    outcomes = [Outcome(bad, started, error=TransportError("HTTP 500: a\x00b", status_code=500, latency_ms=3,
                                                           response_excerpt="x\x00y")),
                Outcome(good, started, result=AttemptResult(status_code=200, latency_ms=2, response_excerpt="ok\x00"))]
    assert fastpath.insert_attempts(outcomes, [1, 1], timezone.now()) == {good.pk}
    got = {a.delivery_id: (a.error, a.response_excerpt) for a in DeliveryAttempt.objects.all()}
    assert got == {bad.pk: ("HTTP 500: a\ufffdb", "x\ufffdy"), good.pk: ("", "ok\ufffd")}


def _due(tenant, n: int, **fields) -> list[Delivery]:
    now = timezone.now()
    rows = Delivery.objects.bulk_create([
        Delivery(tenant=tenant, channel="email", event_type="alert.triggered", msg_id=f"msg_claim_{i}_{id(fields)}",
                 body=b"{}", recipients=["ops@example.com"], next_attempt_at=now, created_at=now,
                 expires_at=now + timedelta(hours=1), **fields)
        for i in range(n)])
    return [r.pk for r in rows]


def test_claim_rows_takes_due_rows_once_and_renews_its_own_claim(tenant):
    due = _due(tenant, 2)
    (later,) = _due(tenant, 1, state="PENDING")
    Delivery.objects.filter(pk=later).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    claimed = fastpath.claim_rows(due + [later], None, timezone.now())
    assert sorted(d.pk for d in claimed) == sorted(due)  # the not-yet-due row is left alone
    token = claimed[0].claim_token
    assert token and all(d.state == "SENDING" and d.claim_token == token for d in claimed)
    assert fastpath.claim_rows(due, None, timezone.now()) == []  # held: a second claim gets nothing
    renewed = fastpath.claim_rows(due, token, timezone.now())
    assert sorted(d.pk for d in renewed) == sorted(due) and {d.claim_token for d in renewed} == {token}
    assert fastpath.claim_rows(due, "someone-else", timezone.now()) == []


def test_claim_rows_takes_back_a_row_whose_lease_expired(tenant, settings):
    settings.DELIVERY_CLAIM_LEASE_SECONDS = 60
    (row,) = _due(tenant, 1)
    [held] = fastpath.claim_rows([row], None, timezone.now())
    # The sender died: its claim is older than the lease by the database's clock.
    Delivery.objects.filter(pk=row).update(claimed_at=timezone.now() - timedelta(minutes=5))
    [again] = fastpath.claim_rows([row], None, timezone.now())
    assert again.claim_token != held.claim_token and again.state == "SENDING"
