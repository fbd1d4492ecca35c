"""Two sweeps at once on real PostgreSQL (two threads, two connections): one ticket, one run."""
from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from apps.actions import config, remediation, tickets
from apps.actions.models import ActionRun, Ticket

from .peers import Jira, Peer

pytestmark = pytest.mark.django_db(transaction=True)


def both_at_once(target) -> list:
    barrier = threading.Barrier(2)
    results: list = []

    def body():
        try:
            barrier.wait(5)
            results.append(target())
        except Exception as exc:  # reported to the test, which asserts on it
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


class SlowJira(Jira):
    """Answers after 0.3 s, so the second sweep runs while the first is still talking to Jira."""

    def _answer(self, path, headers, body):
        time.sleep(0.3)
        return super()._answer(path, headers, body)


def test_two_concurrent_sweeps_create_one_ticket(tenant, make_alert):
    with SlowJira() as jira:
        config.bridge_save(tenant=tenant, actor=None, data={
            "kind": "jira", "base_url": jira.url, "auth": "basic", "username": "bot@acme.example",
            "secret": "jira-token", "project_key": "OPS", "auto_create_severities": ["critical"]})
        alerts = [make_alert() for _ in range(3)]
        results = both_at_once(tickets.create_due)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(results) == 3  # every alert claimed by exactly one of the two sweeps
    assert jira.paths() == ["/rest/api/2/issue"] * 3
    assert Ticket.objects.filter(state="open").count() == 3
    assert sorted(Ticket.objects.values_list("alert_id", flat=True)) == sorted(a.pk for a in alerts)


def test_two_concurrent_sweeps_run_an_action_once_per_alert_within_the_limit(tenant, make_alert):
    def slow(path, headers, body):
        time.sleep(0.2)
        return 200, {"ok": True}

    with Peer(slow) as server:
        config.action_save(tenant=tenant, actor=None, data={
            "name": "restart", "url": server.url, "auto_run_severities": ["critical"], "max_runs_per_hour": 2})
        for _ in range(4):
            make_alert()
        results = both_at_once(remediation.auto_run_due)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len(server.requests) == 2
    statuses = sorted(ActionRun.objects.values_list("status", flat=True))
    assert statuses == ["skipped", "skipped", "succeeded", "succeeded"]
