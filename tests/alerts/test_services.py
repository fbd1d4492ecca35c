"""Every allowed and refused transition, with its timeline line, audit row and event."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts import services
from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.audit.models import AuditEvent
from apps.core.auth import TokenPrincipal
from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.tenants.models import TenantMembership

pytestmark = pytest.mark.django_db

S = AlertState
ALL = [S.OPEN, S.ACKNOWLEDGED, S.ESCALATED, S.SUPPRESSED, S.RESOLVED]


def _ack(a, actor):
    return services.alert_acknowledge(alert_id=a.pk, actor=actor)


def _resolve(a, actor):
    return services.alert_resolve(alert_id=a.pk, actor=actor)


def _reopen(a, actor):
    return services.alert_reopen(alert_id=a.pk, actor=actor)


def _suppress(a, actor):
    return services.alert_suppress(alert_id=a.pk, actor=actor, duration=timedelta(hours=1), reason="deploy")


def _unsuppress(a, actor):
    return services.alert_unsuppress(alert_id=a.pk, actor=actor)


def _escalate(a, actor):
    return services.alert_escalate(alert_id=a.pk, actor=actor)


def _assign(a, actor):
    return services.alert_assign(alert_id=a.pk, actor=actor, assignee=actor)


TRANSITIONS = {
    # name: (service, allowed from, resulting state (None = unchanged), timeline kind, audit action)
    "acknowledge": (_ack, {S.OPEN, S.ESCALATED}, S.ACKNOWLEDGED, "acknowledged", "alert.acknowledged"),
    "resolve": (_resolve, {S.OPEN, S.ACKNOWLEDGED, S.ESCALATED, S.SUPPRESSED}, S.RESOLVED, "resolved", "alert.resolved"),
    "reopen": (_reopen, {S.RESOLVED}, S.OPEN, "reopened", "alert.reopened"),
    "suppress": (_suppress, {S.OPEN, S.ACKNOWLEDGED, S.ESCALATED}, S.SUPPRESSED, "suppressed", "alert.suppressed"),
    "unsuppress": (_unsuppress, {S.SUPPRESSED}, S.OPEN, "unsuppressed", "alert.unsuppressed"),
    "escalate": (_escalate, {S.OPEN, S.ACKNOWLEDGED, S.ESCALATED}, S.ESCALATED, "escalated", "alert.escalated"),
    "assign": (_assign, {S.OPEN, S.ACKNOWLEDGED, S.ESCALATED, S.SUPPRESSED}, None, "assigned", "alert.assigned"),
}
CASES = [(name, state) for name in TRANSITIONS for state in ALL]


@pytest.fixture
def operator(make_user):
    return make_user("olivia", staff=True, groups=("operators",))


@pytest.mark.parametrize("name,state", CASES, ids=[f"{n}-from-{s}" for n, s in CASES])
def test_transition_matrix(name, state, make_alert, operator, events):
    service, allowed, result, kind, action = TRANSITIONS[name]
    resolved = {"resolved_at": None} if state != S.RESOLVED else {}
    alert = make_alert(state=state, **resolved)
    before_audit = AuditEvent.objects.count()
    if state in allowed:
        out = service(alert, operator)
        assert out.state == (result or state)
        entry = TimelineEntry.objects.filter(alert=alert).latest("id")
        assert entry.kind == kind and entry.actor_label == "olivia" and entry.actor_user == operator
        audit = AuditEvent.objects.latest("id")
        assert (audit.action, audit.target_id, audit.actor_label, audit.tenant_id) == (
            action, str(alert.pk), "olivia", alert.tenant_id)
        assert events and events[-1][0] == alert.pk
    else:
        with pytest.raises(Conflict) as err:
            service(alert, operator)
        assert err.value.message == f"alert {alert.pk} is {state}; cannot {name}"
        assert err.value.details["state"] == state
        alert.refresh_from_db()
        assert alert.state == state
        assert not TimelineEntry.objects.filter(alert=alert).exists()
        assert AuditEvent.objects.count() == before_audit
        assert events == []


@pytest.mark.parametrize("name", TRANSITIONS)
def test_missing_alert_is_not_found(name, db, operator):
    service = TRANSITIONS[name][0]
    with pytest.raises(NotFound):
        service(Alert(pk=999_999), operator)


def test_acknowledge_records_who_when_and_note_and_stops_escalation(make_alert, frozen, events):
    alert = make_alert(next_escalation_at=frozen() + timedelta(minutes=5))
    token = TokenPrincipal(token_id=7, name="ops-bot", tenant_id=alert.tenant_id, tenant_slug="acme",
                           scopes=frozenset())
    out = services.alert_acknowledge(alert_id=alert.pk, actor=token, note="on it")
    assert (out.state, out.acknowledged_at, out.acknowledged_by, out.next_escalation_at) == (
        S.ACKNOWLEDGED, frozen(), "token:ops-bot", None)
    entry = out.timeline.get()
    assert (entry.message, entry.actor_user, entry.actor_label) == ("on it", None, "token:ops-bot")
    assert AuditEvent.objects.get(action="alert.acknowledged").actor_type == "token"
    assert events == [(alert.pk, "alert.updated", {"state": "ACKNOWLEDGED", "acknowledged_by": "token:ops-bot"})]


def test_resolve_by_system_and_reopen_clears_ack_and_counts(make_alert, frozen, events):
    alert = make_alert(state=S.ACKNOWLEDGED, acknowledged_at=frozen(), acknowledged_by="bob", escalation_level=2)
    services.alert_resolve(alert_id=alert.pk, actor=None, note="fixed by deploy 42")
    alert.refresh_from_db()
    assert (alert.state, alert.resolved_by, alert.resolved_at) == (S.RESOLVED, "system", frozen())
    out = services.alert_reopen(alert_id=alert.pk, actor=None)
    assert (out.state, out.reopened_count, out.acknowledged_at, out.escalation_level, out.resolved_at) == (
        S.OPEN, 1, None, 0, None)
    assert [e[1] for e in events] == ["alert.updated", "alert.updated"]
    assert events[1][2]["reopened"] is True


def test_reopen_refused_while_another_alert_with_the_fingerprint_is_active(make_alert):
    old = make_alert(state=S.RESOLVED, fingerprint="same")
    make_alert(state=S.OPEN, fingerprint="same")
    with pytest.raises(Conflict, match="another active alert"):
        services.alert_reopen(alert_id=old.pk, actor=None)
    old.refresh_from_db()
    assert old.state == S.RESOLVED


def test_assign_take_ownership_unassign_and_refuse_strangers(make_alert, make_user, operator, other_tenant, events):
    alert = make_alert()
    services.alert_assign(alert_id=alert.pk, actor=operator, assignee=operator)
    assert alert.timeline.latest("id").message == "took ownership"
    member = make_user("mia")
    TenantMembership.objects.create(user=member, tenant=alert.tenant, role="operator")
    out = services.alert_assign(alert_id=alert.pk, actor=operator, assignee=member)
    assert out.assignee == member and alert.timeline.latest("id").message == "assigned to mia"
    stranger = make_user("sam")
    TenantMembership.objects.create(user=stranger, tenant=other_tenant, role="operator")
    with pytest.raises(ApplicationError) as err:
        services.alert_assign(alert_id=alert.pk, actor=operator, assignee=stranger)
    assert "assignee" in err.value.details
    out = services.alert_assign(alert_id=alert.pk, actor=operator, assignee=None)
    assert out.assignee is None and alert.timeline.latest("id").message == "unassigned"
    assert [e[2] for e in events] == [{"assignee": "olivia"}, {"assignee": "mia"}, {"assignee": None}]


@pytest.mark.parametrize("state", ALL)
def test_notes_in_any_state_are_internal(state, make_alert, operator, events):
    alert = make_alert(state=state)
    entry = services.alert_add_note(alert_id=alert.pk, actor=operator, text="  looked at the graphs ")
    assert (entry.kind, entry.message, entry.actor_user) == ("note", "looked at the graphs", operator)
    assert AuditEvent.objects.filter(action="alert.note", target_id=str(alert.pk)).exists()
    assert events == []


def test_empty_note_is_refused_naming_the_field(make_alert, operator):
    with pytest.raises(ApplicationError) as err:
        services.alert_add_note(alert_id=make_alert().pk, actor=operator, text="  ")
    assert err.value.details == {"text": ["required"]}


def test_suppress_validates_and_unsuppress_returns_to_acknowledged(make_alert, operator, frozen, events):
    alert = make_alert(state=S.ACKNOWLEDGED, acknowledged_at=frozen())
    with pytest.raises(ApplicationError) as err:
        services.alert_suppress(alert_id=alert.pk, actor=operator, duration=timedelta(days=31), reason="x")
    assert "duration" in err.value.details
    with pytest.raises(ApplicationError) as err:
        services.alert_suppress(alert_id=alert.pk, actor=operator, duration=timedelta(hours=1), reason=" ")
    assert "reason" in err.value.details
    out = services.alert_suppress(alert_id=alert.pk, actor=operator, duration=timedelta(hours=2), reason="maintenance")
    assert (out.state, out.suppressed_until, out.suppressed_reason) == (S.SUPPRESSED, frozen() + timedelta(hours=2),
                                                                        "maintenance")
    out = services.alert_unsuppress(alert_id=alert.pk, actor=operator)
    assert (out.state, out.suppressed_until, out.next_escalation_at) == (S.ACKNOWLEDGED, None, None)
    assert [e[1] for e in events] == ["alert.updated", "alert.updated"]


def test_unsuppress_to_open_restarts_the_escalation_clock(make_alert, operator, frozen):
    alert = make_alert(state=S.SUPPRESSED, severity="critical")
    out = services.alert_unsuppress(alert_id=alert.pk, actor=operator)
    assert out.state == S.OPEN and out.next_escalation_at == frozen() + timedelta(minutes=5)


def test_unsuppress_sweeper_waits_for_the_end_of_the_suppression(make_alert, operator, frozen):
    alert = services.alert_suppress(alert_id=make_alert().pk, actor=operator, duration=timedelta(minutes=10),
                                    reason="noisy")
    assert services.unsuppress_due() == 0
    frozen.advance(minutes=10)
    assert services.unsuppress_due() == 1
    alert.refresh_from_db()
    assert alert.state == S.OPEN
    assert alert.timeline.latest("id").actor_label == "system"


def test_bulk_acknowledge_only_touches_ackable_alerts_and_audits_each(make_alert, operator, events):
    targets = [make_alert(), make_alert(state=S.ESCALATED), make_alert()]
    skipped = [make_alert(state=S.RESOLVED), make_alert(state=S.SUPPRESSED), make_alert(state=S.ACKNOWLEDGED)]
    ids = services.alerts_acknowledge_bulk(alerts=Alert.objects.all(), actor=operator, note="incident 12")
    assert sorted(ids) == sorted(a.pk for a in targets)
    assert set(Alert.objects.filter(pk__in=ids).values_list("state", flat=True)) == {S.ACKNOWLEDGED}
    for a in skipped:
        assert Alert.objects.get(pk=a.pk).state == a.state
    assert AuditEvent.objects.filter(action="alert.acknowledged").count() == 3
    assert TimelineEntry.objects.filter(kind="acknowledged", message="incident 12").count() == 3
    assert sorted(e[0] for e in events) == sorted(ids)


def test_bulk_acknowledge_respects_the_limit(make_alert, operator):
    for _ in range(5):
        make_alert()
    assert len(services.alerts_acknowledge_bulk(alerts=Alert.objects.all(), actor=operator, limit=2)) == 2
    assert Alert.objects.filter(state=S.OPEN).count() == 3


def test_auto_resolve_resolves_quiet_alerts_only(make_alert, frozen, events):
    quiet = make_alert(auto_resolve_seconds=900, auto_resolve_at=frozen() + timedelta(minutes=15))
    busy = make_alert(auto_resolve_seconds=900, auto_resolve_at=frozen() + timedelta(minutes=20))
    never = make_alert()
    frozen.advance(minutes=16)
    assert services.auto_resolve_due() == 1
    states = dict(Alert.objects.values_list("pk", "state"))
    assert states == {quiet.pk: S.RESOLVED, busy.pk: S.OPEN, never.pk: S.OPEN}
    quiet.refresh_from_db()
    assert quiet.resolved_by == "system"
    entry = quiet.timeline.get()
    assert entry.message == "auto-resolved: no matching events for 15m" and entry.data == {"auto_resolved": True}
    assert AuditEvent.objects.filter(action="alert.auto_resolved", target_id=str(quiet.pk)).exists()
    assert events == [(quiet.pk, "alert.updated", {"state": "RESOLVED", "resolved_by": "system", "auto_resolved": True})]
    assert services.auto_resolve_due() == 0
