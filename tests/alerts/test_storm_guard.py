"""The alert-storm guard: the budget arithmetic (pure) and the fold alert it writes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.db import transaction

from apps.alerts.firing import fire_alerts_bulk
from apps.alerts.models import Alert, OpenedCount
from apps.alerts.storm_guard import Candidate, fold, opened_last_minute, triage

from .conftest import fire_kwargs

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def crit(tenant: int = 1, rule: str = "r") -> Candidate:
    return Candidate(tenant, rule, "critical")


# --------------------------------------------------------------------------- triage (pure)


def test_under_both_limits_everything_is_admitted():
    out = triage([crit(), crit(), crit(2)], opened_last_minute={}, per_batch=5, per_minute=10)
    assert out.admitted == [0, 1, 2] and out.folded == {}


def test_per_batch_limit_folds_the_rest_per_tenant_and_rule():
    cands = [crit(1, "a")] * 4 + [crit(1, "b")] * 2 + [crit(2, "a")] * 3
    out = triage(cands, opened_last_minute={}, per_batch=3, per_minute=100)
    # Each tenant has its own budget of 3; within tenant 1 each rule's first goes before any second.
    assert out.admitted == [0, 1, 4, 6, 7, 8]
    assert out.folded == {(1, "a"): [2, 3], (1, "b"): [5]}


def test_per_minute_budget_counts_what_the_tenant_opened_already():
    out = triage([crit()] * 5, opened_last_minute={1: 8}, per_batch=100, per_minute=10)
    assert out.admitted == [0, 1] and out.folded == {(1, "r"): [2, 3, 4]}
    spent = triage([crit()] * 2, opened_last_minute={1: 12}, per_batch=100, per_minute=10)
    assert spent.admitted == [] and spent.folded == {(1, "r"): [0, 1]}


def test_most_severe_first_then_one_per_rule_round_robin():
    cands = [Candidate(1, "noisy", "warning")] * 3 + [Candidate(1, "crash", "emergency"),
                                                       Candidate(1, "other", "warning")]
    out = triage(cands, opened_last_minute={}, per_batch=3, per_minute=100)
    assert out.admitted == [0, 3, 4]  # emergency, then the first of each warning rule
    assert out.folded == {(1, "noisy"): [1, 2]}


def test_ten_thousand_candidates_give_the_limit_and_one_fold_per_rule():
    cands = [crit(1, "fatal-error")] * 10_000
    out = triage(cands, opened_last_minute={}, per_batch=100, per_minute=300)
    assert len(out.admitted) == 100
    assert list(out.folded) == [(1, "fatal-error")] and len(out.folded[(1, "fatal-error")]) == 9_900


# --------------------------------------------------------------------------- fold and the minute count


def _fold(tenant, keys, **kw):
    return fold(tenant=tenant, rule_key="fatal-error", rule_name="Fatal error", rule_version=1, category="error",
                severity="emergency", labels={"team": "core"}, recommended_action="Check the plugins.",
                window_seconds=60, folded_keys=keys, trace_ids=["t1"], first_seen=T0, last_seen=T0,
                source_received_at=T0, **kw)


@pytest.mark.django_db
def test_fold_opens_one_alert_per_rule_and_counts_what_it_stands_for(tenant):
    first = _fold(tenant, [f"plugin_id=p-{i}" for i in range(7)])
    assert first.created
    alert = Alert.objects.get(pk=first.alert.pk)
    assert alert.count == 7 and alert.plugin_id is None
    assert alert.title == "Fatal error: 7 more alerts suppressed (alert storm)"
    assert "plugin_id=p-0, plugin_id=p-1, plugin_id=p-2, plugin_id=p-3, plugin_id=p-4, ..." in alert.summary
    assert "ALERTS_NEW_PER_BATCH_MAX" in alert.summary
    assert alert.labels == {"team": "core", "storm_guard": "folded"}

    again = _fold(tenant, ["plugin_id=p-7", "plugin_id=p-8"])
    assert again.absorbed and again.alert.pk == alert.pk
    alert.refresh_from_db()
    assert alert.count == 9
    assert alert.title == "Fatal error: 9 more alerts suppressed (alert storm)"
    assert alert.summary.startswith("9 new alerts of rule fatal-error folded")
    assert alert.samples[:2] == ["plugin_id=p-0", "plugin_id=p-1"] and "plugin_id=p-7" in alert.samples
    assert Alert.objects.filter(tenant=tenant).count() == 1


@pytest.mark.django_db
@pytest.mark.both_databases
def test_opened_last_minute_counts_committed_alerts_per_tenant_for_at_least_a_minute(
        tenant, other_tenant, frozen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _fold(tenant, ["plugin_id=a"])
    with django_capture_on_commit_callbacks(execute=True):
        fire_alerts_bulk([fire_kwargs(tenant, group_key={"n": i}) for i in range(3)]
                         + [fire_kwargs(other_tenant, group_key={"n": 0})])
    now = frozen()
    assert opened_last_minute({tenant.pk, other_tenant.pk}, now=now) == {tenant.pk: 4, other_tenant.pk: 1}
    assert opened_last_minute({tenant.pk}, now=now) == {tenant.pk: 4}
    # A window of 60 to 70 s: still counted a minute later, gone after 70 s.
    assert opened_last_minute({tenant.pk}, now=now + timedelta(seconds=60)) == {tenant.pk: 4}
    assert opened_last_minute({tenant.pk}, now=now + timedelta(seconds=70)) == {}


@pytest.mark.django_db
@pytest.mark.both_databases
def test_alerts_of_a_rolled_back_savepoint_are_not_counted(tenant, frozen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        fire_alerts_bulk([fire_kwargs(tenant, group_key={"n": 0})])
        try:
            with transaction.atomic():
                fire_alerts_bulk([fire_kwargs(tenant, group_key={"n": i}) for i in range(1, 6)])
                raise RuntimeError("undo")
        except RuntimeError:
            pass
        fire_alerts_bulk([fire_kwargs(tenant, group_key={"n": 9})])
    assert Alert.objects.filter(tenant=tenant).count() == 2
    assert opened_last_minute({tenant.pk}, now=frozen()) == {tenant.pk: 2}


@pytest.mark.django_db
@pytest.mark.both_databases
def test_expired_slots_are_deleted_as_new_ones_are_written(tenant, frozen, django_capture_on_commit_callbacks):
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            fire_alerts_bulk([fire_kwargs(tenant, group_key={"at": frozen().isoformat()})])
        frozen.advance(seconds=40)
    # Written at 0, 40 and 80 s: by the third write the first slot had left the window.
    assert sorted(OpenedCount.objects.values_list("n", flat=True)) == [1, 1]
    assert opened_last_minute({tenant.pk}, now=frozen() - timedelta(seconds=40)) == {tenant.pk: 2}


@pytest.mark.django_db(transaction=True)
def test_alerts_opened_outside_a_transaction_are_counted_at_once(tenant, frozen):
    from apps.alerts import opened

    opened.note({tenant.pk: 2, tenant.pk + 1000: 0})
    assert opened_last_minute({tenant.pk}, now=frozen()) == {tenant.pk: 2}
    assert list(OpenedCount.objects.values_list("tenant_id", "n")) == [(tenant.pk, 2)]
