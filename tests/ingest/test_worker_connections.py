"""Celery workers keep their database connection between tasks (alertcenter/celery.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection, transaction

from alertcenter.celery import _recycle_db_connections, app


def test_celery_does_not_close_the_connection_after_every_task():
    fixup = DjangoWorkerFixup(app)
    assert fixup.db_reuse_max >= 10**9
    calls = []
    fixup._close_database = lambda: calls.append(1)
    for _ in range(10_000):
        fixup.close_database()
    assert calls == []


@pytest.mark.django_db(transaction=True)
def test_each_task_keeps_a_healthy_connection_and_drops_a_stale_one():
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection.ensure_connection()
    raw = connection.connection
    _recycle_db_connections(sender=task)
    assert connection.connection is raw  # reused: no new backend per task
    connection.close_at = 0  # older than CONN_MAX_AGE
    _recycle_db_connections(sender=task)
    assert connection.connection is None


@pytest.mark.django_db
def test_an_eager_task_leaves_its_callers_transaction_alone():
    with transaction.atomic():
        raw = connection.connection
        _recycle_db_connections(sender=SimpleNamespace(request=SimpleNamespace(is_eager=True)))
        assert connection.connection is raw and not connection.needs_rollback
