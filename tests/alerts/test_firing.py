"""fire_alert: create, absorb (with coalesced timeline), reopen, silence, tenant separation."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts import services
from apps.alerts.matching import fingerprint_for
from apps.alerts.models import Alert, AlertState, Silence, TimelineEntry
from apps.alerts.silences import silence_create, silence_expire
from apps.audit.models import AuditEvent
from apps.tenants.models import Plugin

from .conftest import fire_kwargs

pytestmark = pytest.mark.django_db


def test_create_sets_everything_and_sends_triggered(tenant, plugin, frozen, events):
    result = services.fire_alert(**fire_kwargs(tenant, plugin, auto_resolve_seconds=900))
    alert = result.alert
    assert (result.created, result.absorbed, result.reopened) == (True, False, False)
    assert alert.fingerprint == fingerprint_for("plugin-error-burst", {"tenant_id": "acme", "plugin_id": "checkout"})
    assert (alert.state, alert.count, alert.trace_ids, alert.samples) == (AlertState.OPEN, 25, ["t1", "t2"], ["ERROR boom"])
    assert alert.auto_resolve_at == frozen() + timedelta(seconds=900)
    assert alert.next_escalation_at == frozen() + timedelta(minutes=5)  # critical default
    assert alert.timeline.get().kind == "created"
    assert AuditEvent.objects.get(action="alert.created").target_id == str(alert.pk)
    assert events == [(alert.pk, "alert.triggered", {"state": "OPEN"})]


def test_absorb_merges_caps_and_coalesces_the_timeline(tenant, plugin, frozen, events):
    first = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    for i in range(30):
        frozen.advance(seconds=5)
        result = services.fire_alert(**fire_kwargs(
            tenant, plugin, occurrences=2, trace_ids=[f"x{i}"], samples=[f"line {i}"], last_seen=frozen()))
        assert result.absorbed and result.alert.pk == first.pk
    alert = Alert.objects.get()
    assert alert.count == 25 + 60
    assert alert.last_seen == frozen()
    assert alert.trace_ids == ["t1", "t2"] + [f"x{i}" for i in range(18)]  # capped at 20, first kept
    assert len(alert.samples) == 10 and alert.samples[0] == "ERROR boom"
    occurrences = list(alert.timeline.filter(kind="occurrence"))
    # 150 s of batches every 5 s -> one line per minute, not 30 lines
    assert len(occurrences) == 3
    assert sum(e.data["occurrences"] for e in occurrences) == 60
    assert [e[1] for e in events] == ["alert.triggered"]  # absorbing notifies nobody


def test_absorb_moves_the_auto_resolve_deadline(tenant, plugin, frozen):
    services.fire_alert(**fire_kwargs(tenant, plugin, auto_resolve_seconds=600))
    frozen.advance(minutes=8)
    services.fire_alert(**fire_kwargs(tenant, plugin, auto_resolve_seconds=600, last_seen=frozen()))
    frozen.advance(minutes=5)
    assert services.auto_resolve_due() == 0
    frozen.advance(minutes=6)
    assert services.auto_resolve_due() == 1


def test_fires_again_within_the_window_reopen(tenant, plugin, frozen, events, settings):
    settings.ALERT_REOPEN_WINDOW_SECONDS = 3600
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    services.alert_acknowledge(alert_id=alert.pk, actor=None)
    services.alert_resolve(alert_id=alert.pk, actor=None)
    frozen.advance(minutes=59)
    result = services.fire_alert(**fire_kwargs(tenant, plugin, occurrences=3, last_seen=frozen()))
    assert result.reopened and result.alert.pk == alert.pk
    assert (result.alert.state, result.alert.count, result.alert.reopened_count) == (AlertState.OPEN, 28, 1)
    assert result.alert.acknowledged_at is None
    assert Alert.objects.count() == 1
    assert events[-1] == (alert.pk, "alert.triggered", {"reopened_count": 1, "state": "OPEN", "reopened": True})
    assert AuditEvent.objects.filter(action="alert.reopened").count() == 1


def test_fires_after_the_window_creates_a_new_alert(tenant, plugin, frozen, settings):
    settings.ALERT_REOPEN_WINDOW_SECONDS = 3600
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    services.alert_resolve(alert_id=alert.pk, actor=None)
    frozen.advance(minutes=61)
    result = services.fire_alert(**fire_kwargs(tenant, plugin))
    assert result.created and result.alert.pk != alert.pk
    assert Alert.objects.get(pk=alert.pk).state == AlertState.RESOLVED


def test_reopen_can_be_switched_off(tenant, plugin, settings):
    settings.ALERT_REOPEN_WINDOW_SECONDS = 0
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    services.alert_resolve(alert_id=alert.pk, actor=None)
    assert services.fire_alert(**fire_kwargs(tenant, plugin)).created


def test_same_group_key_in_two_tenants_gives_two_alerts(tenant, other_tenant):
    a = services.fire_alert(**fire_kwargs(tenant, group_key={"plugin_id": "p"})).alert
    b = services.fire_alert(**fire_kwargs(other_tenant, group_key={"plugin_id": "p"})).alert
    assert a.pk != b.pk and a.fingerprint != b.fingerprint


def test_matching_silence_creates_suppressed_and_notifies_nobody(tenant, plugin, frozen, events):
    silence = silence_create(actor=None, tenant_id=tenant.pk, matchers={"plugin": "checkout", "labels": {"env": "prod"}},
                             ends_at=frozen() + timedelta(hours=1), reason="maintenance")
    result = services.fire_alert(**fire_kwargs(tenant, plugin))
    alert = result.alert
    assert result.created and alert.state == AlertState.SUPPRESSED
    assert (alert.silence_id, alert.suppressed_until, alert.next_escalation_at) == (silence.pk, silence.ends_at, None)
    assert alert.timeline.get().data["silence_id"] == silence.pk
    services.fire_alert(**fire_kwargs(tenant, plugin))  # absorbed, still quiet
    assert events == []
    assert services.escalate_due() == 0
    # the silence ends by itself; the sweeper unsuppresses and the tenant hears of it for the first time
    frozen.advance(hours=1)
    assert services.unsuppress_due() == 1
    alert.refresh_from_db()
    assert (alert.state, alert.silence_id) == (AlertState.OPEN, None)
    assert events == [(alert.pk, "alert.triggered", {"state": "OPEN"})]


def test_silence_for_another_plugin_or_tenant_does_not_match(tenant, other_tenant, plugin, frozen, events):
    silence_create(actor=None, tenant_id=tenant.pk, matchers={"plugin": "search"}, ends_at=frozen() + timedelta(hours=1),
                   reason="x")
    silence_create(actor=None, tenant_id=other_tenant.pk, matchers={}, ends_at=frozen() + timedelta(hours=1), reason="y")
    silence_create(actor=None, tenant_id=tenant.pk, matchers={}, starts_at=frozen() + timedelta(minutes=5),
                   ends_at=frozen() + timedelta(hours=1), reason="later")
    assert services.fire_alert(**fire_kwargs(tenant, plugin)).alert.state == AlertState.OPEN


def test_platform_wide_silence_matches_every_tenant(tenant, other_tenant, frozen):
    silence_create(actor=None, tenant_id=None, matchers={"severity": "critical"}, ends_at=frozen() + timedelta(hours=1),
                   reason="platform maintenance")
    other_plugin = Plugin.objects.create(tenant=other_tenant, slug="checkout")
    assert services.fire_alert(**fire_kwargs(other_tenant, other_plugin)).alert.state == AlertState.SUPPRESSED


def test_reopen_under_an_active_silence_stays_quiet(tenant, plugin, frozen, events):
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    services.alert_resolve(alert_id=alert.pk, actor=None)
    silence_create(actor=None, tenant_id=tenant.pk, matchers={}, ends_at=frozen() + timedelta(hours=1), reason="x")
    events.clear()
    result = services.fire_alert(**fire_kwargs(tenant, plugin))
    assert result.reopened and result.alert.state == AlertState.SUPPRESSED
    assert events == []


def test_expiring_a_silence_early_unsuppresses_its_alerts_at_once(tenant, plugin, frozen, events):
    silence = silence_create(actor=None, tenant_id=tenant.pk, matchers={}, ends_at=frozen() + timedelta(hours=4),
                             reason="x")
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    frozen.advance(minutes=10)
    silence_expire(silence_id=silence.pk, actor=None)
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN
    assert Silence.objects.get(pk=silence.pk).expired_at == frozen()
    assert events == [(alert.pk, "alert.triggered", {"state": "OPEN"})]
    assert AuditEvent.objects.filter(action="silence.expired").count() == 1
    assert TimelineEntry.objects.filter(alert=alert, kind="unsuppressed").exists()
