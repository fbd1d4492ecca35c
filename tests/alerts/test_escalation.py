"""Escalation timing with a controlled clock, policies most-specific-first, silences respected."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts import services
from apps.alerts.models import Alert, AlertState, EscalationPolicy
from apps.alerts.payload import alert_payload
from apps.alerts.policies import policy_for
from apps.alerts.silences import silence_create

from .conftest import fire_kwargs

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("severity,minutes", [("warning", 30), ("critical", 5), ("emergency", 0)])
def test_default_escalation_times(severity, minutes, tenant, plugin, frozen, events):
    alert = services.fire_alert(**fire_kwargs(tenant, plugin, severity=severity)).alert
    if minutes:
        frozen.advance(minutes=minutes, seconds=-1)
        assert services.escalate_due() == 0
        frozen.advance(seconds=1)
    assert services.escalate_due() == 1
    alert.refresh_from_db()
    assert (alert.state, alert.escalation_level, alert.last_escalated_at) == (AlertState.ESCALATED, 1, frozen())
    assert alert.next_escalation_at is None  # the default has one step
    assert events[-1][1] == "alert.escalated" and events[-1][2]["escalation_level"] == 1
    assert alert.title == "Checkout error burst"  # the prefix is only in what is sent
    assert alert_payload(alert, event_type="alert.escalated")["title"] == "[ESCALATED] Checkout error burst"
    frozen.advance(hours=5)
    assert services.escalate_due() == 0


def test_info_never_escalates(tenant, plugin, frozen):
    alert = services.fire_alert(**fire_kwargs(tenant, plugin, severity="info")).alert
    assert alert.next_escalation_at is None
    frozen.advance(days=3)
    assert services.escalate_due() == 0


def test_acknowledged_alert_does_not_escalate(tenant, plugin, frozen):
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    services.alert_acknowledge(alert_id=alert.pk, actor=None)
    frozen.advance(hours=1)
    assert services.escalate_due() == 0


def test_policy_steps_and_repeats(tenant, plugin, frozen, events):
    EscalationPolicy.objects.create(tenant=tenant, severity="critical", repeat=2, steps=[
        {"after_minutes": 1, "channels": ["webhook"], "group": "operators"},
        {"after_minutes": 10, "channels": ["webhook", "sms"], "group": "leads"},
    ])
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    levels = []
    for minutes in (1, 10, 10, 10, 10, 10):
        frozen.advance(minutes=minutes)
        services.escalate_due()
        levels.append(Alert.objects.get(pk=alert.pk).escalation_level)
    assert levels == [1, 2, 3, 4, 4, 4]  # 2 steps + 2 repeats of the last
    escalated = [e[2] for e in events if e[1] == "alert.escalated"]
    assert escalated[0] == {"escalation_level": 1, "channels": ["webhook"], "group": "operators"}
    assert escalated[-1] == {"escalation_level": 4, "channels": ["webhook", "sms"], "group": "leads"}


def test_most_specific_policy_wins(tenant, other_tenant, plugin):
    EscalationPolicy.objects.create(severity="warning", steps=[{"after_minutes": 60, "channels": ["webhook"]}])
    EscalationPolicy.objects.create(tenant=tenant, severity="warning", steps=[{"after_minutes": 20, "channels": ["webhook"]}])
    EscalationPolicy.objects.create(tenant=tenant, plugin=plugin, severity="warning",
                                    steps=[{"after_minutes": 2, "channels": ["email"]}])
    EscalationPolicy.objects.create(tenant=tenant, plugin=plugin, severity="info", enabled=False,
                                    steps=[{"after_minutes": 1, "channels": ["email"]}])

    def first(t, p, sev):
        steps, _ = policy_for(tenant_id=t, plugin_id=p, severity=sev)
        return steps[0]["after_minutes"] if steps else None

    assert first(tenant.pk, plugin.pk, "warning") == 2
    assert first(tenant.pk, None, "warning") == 20
    assert first(other_tenant.pk, None, "warning") == 60
    assert first(tenant.pk, plugin.pk, "info") is None  # disabled policy skipped -> default: never
    assert first(tenant.pk, plugin.pk, "critical") == 5


def test_policy_validation_names_the_step():
    from django.core.exceptions import ValidationError

    bad = EscalationPolicy(severity="warning", repeat=3, steps=[{"after_minutes": 0, "channels": ["pager"]}])
    with pytest.raises(ValidationError, match="step 0: channels"):
        bad.full_clean()


def test_silenced_open_alert_does_not_escalate_until_the_silence_ends(tenant, plugin, frozen):
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    silence = silence_create(actor=None, tenant_id=tenant.pk, matchers={"rule": "plugin-error-burst"},
                             ends_at=frozen() + timedelta(minutes=30), reason="x")
    frozen.advance(minutes=6)
    assert services.escalate_due() == 0
    assert Alert.objects.get(pk=alert.pk).next_escalation_at == silence.ends_at
    frozen.advance(minutes=25)
    assert services.escalate_due() == 1


def test_escalation_heeds_its_tenants_and_the_all_tenant_silences_not_other_tenants(tenant, other_tenant, plugin,
                                                                                    frozen):
    from apps.tenants.models import Plugin

    mine = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    theirs = services.fire_alert(**fire_kwargs(other_tenant, Plugin.objects.create(tenant=other_tenant,
                                                                                   slug="checkout"))).alert
    # Another tenant's silence with the same matchers, ending last: it must not cover ours.
    silence_create(actor=None, tenant_id=other_tenant.pk, matchers={"rule": "plugin-error-burst"},
                   ends_at=frozen() + timedelta(minutes=60), reason="theirs")
    everyone = silence_create(actor=None, tenant_id=None, matchers={"severity": "critical"},
                              ends_at=frozen() + timedelta(minutes=20), reason="all tenants")
    frozen.advance(minutes=6)
    assert services.escalate_due() == 0
    assert Alert.objects.get(pk=mine.pk).next_escalation_at == everyone.ends_at
    assert Alert.objects.get(pk=theirs.pk).next_escalation_at == frozen() + timedelta(minutes=54)  # its own, longest


def test_sweeper_refuses_a_stale_claim(tenant, plugin, frozen):
    from apps.core.errors import Conflict

    alert = services.fire_alert(**fire_kwargs(tenant, plugin, severity="emergency")).alert
    services.alert_escalate(alert_id=alert.pk, expected_level=0)
    with pytest.raises(Conflict):
        services.alert_escalate(alert_id=alert.pk, expected_level=0)
    assert Alert.objects.get(pk=alert.pk).escalation_level == 1
