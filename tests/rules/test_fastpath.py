"""apps.rules.fastpath on real PostgreSQL and (via tests/test_fastpaths_on_sqlite.py) real SQLite."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection, transaction

from apps.alerts.models import Alert, AlertState
from apps.rules.fastpath import WindowKey, lock_windows, save_windows
from apps.rules.models import WindowState

pytestmark = pytest.mark.both_databases
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def key(tenant, name: str, rule: str = "errors") -> WindowKey:
    return WindowKey(rule_key=rule, tenant_id=tenant.pk, group_hash=f"hash-{name}", group_key={"plugin_id": name})


def existing_window(tenant, name: str, **fields) -> WindowState:
    values = dict(rule_key="errors", tenant=tenant, group_hash=f"hash-{name}", group_key={"plugin_id": name},
                  state={"buckets": {"100": 2}}, updated_at=NOW - timedelta(hours=1))
    values.update(fields)
    return WindowState.objects.create(**values)


@pytest.mark.django_db
def test_lock_windows_creates_missing_rows_and_returns_existing_ones_as_they_are(tenant):
    old = existing_window(tenant, "b", last_fired_at=NOW - timedelta(minutes=5))
    with transaction.atomic():
        rows = lock_windows([key(tenant, "a"), key(tenant, "b"), key(tenant, "c", rule="auth")], NOW)
    assert list(rows) == [("auth", tenant.pk, "hash-c"), ("errors", tenant.pk, "hash-a"),
                          ("errors", tenant.pk, "hash-b")]  # the lock order
    kept = rows[("errors", tenant.pk, "hash-b")]
    assert (kept.pk, kept.state, kept.last_fired_at, kept.alert_id) == (old.pk, {"buckets": {"100": 2}},
                                                                       NOW - timedelta(minutes=5), None)
    new = WindowState.objects.get(group_hash="hash-a")
    assert (rows[("errors", tenant.pk, "hash-a")].pk, rows[("errors", tenant.pk, "hash-a")].state) == (new.pk, {})
    assert (new.group_key, new.state, new.updated_at, new.last_fired_at) == ({"plugin_id": "a"}, {}, NOW, None)
    assert WindowState.objects.get(pk=old.pk).updated_at == NOW - timedelta(hours=1)  # untouched until saved

    with transaction.atomic():
        again = lock_windows([key(tenant, "a"), key(tenant, "b")], NOW + timedelta(minutes=1))
    assert {k: w.pk for k, w in again.items()} == {k: rows[k].pk for k in again}
    assert WindowState.objects.count() == 3
    assert lock_windows([], NOW) == {}


@pytest.mark.django_db
def test_save_windows_writes_state_fired_at_alert_and_updated_at_back(tenant, plugin):
    alert = Alert.objects.create(tenant=tenant, plugin=plugin, rule_key="errors", fingerprint="fp", severity="critical",
                                 state=AlertState.OPEN, title="t", summary="s", count=1, first_seen=NOW,
                                 last_seen=NOW, created_at=NOW, updated_at=NOW)
    other = existing_window(tenant, "z")
    with transaction.atomic():
        rows = lock_windows([key(tenant, "a"), key(tenant, "b")], NOW)
        a, b = rows[("errors", tenant.pk, "hash-a")], rows[("errors", tenant.pk, "hash-b")]
        a.state, a.last_fired_at, a.alert_id, a.updated_at = {"buckets": {"1714564800": 7}, "n": 7}, NOW, alert.pk, NOW
        b.state, b.updated_at = {"buckets": {"1714564801": 1}}, NOW + timedelta(seconds=1)
        save_windows([a, b])
    saved_a, saved_b = WindowState.objects.get(pk=a.pk), WindowState.objects.get(pk=b.pk)
    assert (saved_a.state, saved_a.last_fired_at, saved_a.alert_id, saved_a.updated_at) == (
        {"buckets": {"1714564800": 7}, "n": 7}, NOW, alert.pk, NOW)
    assert (saved_b.state, saved_b.last_fired_at, saved_b.alert_id, saved_b.updated_at) == (
        {"buckets": {"1714564801": 1}}, None, None, NOW + timedelta(seconds=1))
    other.refresh_from_db()
    assert other.state == {"buckets": {"100": 2}}  # rows not passed are not written
    save_windows([])


@pytest.mark.django_db
def test_keys_and_states_with_quotes_backslashes_braces_and_commas_round_trip(tenant):
    nasty = 'a "quoted", back\\slash {brace} \u00e9 \\" end'
    keys = [WindowKey(rule_key=f'rule "{i}", x', tenant_id=tenant.pk, group_hash=f'h\\"{i},{{}}',
                      group_key={"plugin_id": nasty, "n": i}) for i in range(3)]
    with transaction.atomic():
        rows = lock_windows(keys, NOW)
        assert sorted(rows) == sorted((k.rule_key, k.tenant_id, k.group_hash) for k in keys)
        for w in rows.values():
            w.state, w.updated_at = {"last": nasty, "list": [nasty, None]}, NOW
        save_windows(list(rows.values()))
    stored = {w.group_hash: w for w in WindowState.objects.all()}
    assert {h: (w.rule_key, w.group_key, w.state) for h, w in stored.items()} == {
        k.group_hash: (k.rule_key, k.group_key, {"last": nasty, "list": [nasty, None]}) for k in keys}


@pytest.mark.django_db(transaction=True)
def test_a_locked_window_makes_a_second_worker_wait_until_the_first_commits(tenant):
    existing_window(tenant, "a")
    locked, events, errors = threading.Event(), [], []

    def first():
        try:
            with transaction.atomic():
                lock_windows([key(tenant, "a")], NOW)
                locked.set()
                time.sleep(0.5)
                events.append(("first commits", time.monotonic()))
        except Exception as exc:  # reported below
            errors.append(exc)
            locked.set()
        finally:
            connection.close()

    def second():
        try:
            locked.wait(5)
            with transaction.atomic():
                rows = lock_windows([key(tenant, "a")], NOW)
                events.append(("second locked", time.monotonic()))
                row = rows[("errors", tenant.pk, "hash-a")]
                row.state, row.updated_at = {"by": "second"}, NOW
                save_windows([row])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert [name for name, _ in events] == ["first commits", "second locked"]
    assert WindowState.objects.get(group_hash="hash-a").state == {"by": "second"}
