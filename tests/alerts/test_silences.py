"""Silence matchers (pure), activity in time, preview, validation and audit."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts.matching import matchers_match, validate_matchers
from apps.alerts.models import AlertState, Silence
from apps.alerts.silences import active_silences, silence_create, silence_preview, silence_update
from apps.audit.models import AuditEvent
from apps.core.errors import ApplicationError


@pytest.mark.parametrize("matchers,expected", [
    ({}, True),
    ({"plugin": "checkout"}, True),
    ({"plugin": "search"}, False),
    ({"rule": "plugin-error-burst", "severity": "critical"}, True),
    ({"severity": "warning"}, False),
    ({"labels": {"env": "prod"}}, True),
    ({"labels": {"env": "prod", "region": "eu"}}, False),
    ({"labels": {"env": "staging"}}, False),
])
def test_matchers(matchers, expected):
    assert matchers_match(matchers, plugin_slug="checkout", rule_key="plugin-error-burst", severity="critical",
                          labels={"env": "prod"}) is expected


@pytest.mark.parametrize("bad,message", [
    ({"team": "x"}, "unknown matcher(s) team"),
    ({"severity": "loud"}, "matcher 'severity' must be one of"),
    ({"labels": {"env": 1}}, "matcher 'labels'"),
    ({"plugin": ""}, "matcher 'plugin'"),
    ("plugin=x", "matchers must be an object"),
])
def test_bad_matchers_are_refused(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_matchers(bad)


@pytest.mark.django_db
def test_silences_are_active_only_inside_their_window(tenant, frozen):
    silence = silence_create(actor="alice", tenant_id=tenant.pk, matchers={}, starts_at=frozen() + timedelta(minutes=10),
                             ends_at=frozen() + timedelta(minutes=70), reason="window")
    assert not active_silences(tenant_id=tenant.pk).exists()
    frozen.advance(minutes=10)
    assert list(active_silences(tenant_id=tenant.pk)) == [silence]
    frozen.advance(minutes=60)
    assert not active_silences(tenant_id=tenant.pk).exists()  # expired by itself, nothing ran
    assert not silence.is_active_at(frozen())
    audit = AuditEvent.objects.get(action="silence.created")
    assert (audit.target_id, audit.actor_label, audit.data["reason"]) == (str(silence.pk), "alice", "window")


@pytest.mark.django_db
def test_silence_validation_names_the_field(tenant, frozen):
    with pytest.raises(ApplicationError) as err:
        silence_create(actor=None, tenant_id=tenant.pk, matchers={"sev": "x"}, ends_at=frozen() + timedelta(hours=1),
                       reason="x")
    assert "matchers" in err.value.details
    with pytest.raises(ApplicationError) as err:
        silence_create(actor=None, tenant_id=tenant.pk, matchers={}, ends_at=frozen() - timedelta(hours=1), reason="x")
    assert "ends_at" in err.value.details
    with pytest.raises(ApplicationError) as err:
        silence_create(actor=None, tenant_id=tenant.pk, matchers={}, ends_at=frozen() + timedelta(hours=1), reason="")
    assert "reason" in err.value.details
    assert not Silence.objects.exists()


@pytest.mark.django_db
def test_preview_lists_the_active_alerts_a_draft_would_match(make_alert, other_tenant):
    hit = make_alert(labels={"env": "prod"})
    make_alert(labels={"env": "dev"})
    make_alert(labels={"env": "prod"}, state=AlertState.RESOLVED)
    make_alert(labels={"env": "prod"}, severity="warning")
    found = silence_preview(tenant_id=hit.tenant_id, matchers={"labels": {"env": "prod"}, "severity": "critical",
                                                                  "plugin": "checkout"})
    assert found == [hit]
    assert silence_preview(tenant_id=other_tenant.pk, matchers={}) == []


@pytest.mark.django_db
def test_extending_a_silence_extends_its_alerts_suppression(tenant, plugin, frozen):
    from apps.alerts import services

    from .conftest import fire_kwargs

    silence = silence_create(actor=None, tenant_id=tenant.pk, matchers={}, ends_at=frozen() + timedelta(hours=1),
                             reason="x")
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    silence_update(silence=silence, actor=None, ends_at=frozen() + timedelta(hours=3), reason="longer")
    alert.refresh_from_db()
    assert alert.suppressed_until == frozen() + timedelta(hours=3)
    frozen.advance(hours=2)
    assert services.unsuppress_due() == 0
