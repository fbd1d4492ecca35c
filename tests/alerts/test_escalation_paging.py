"""Escalation steps that notify: the on-call user of a rotation (or a role's members) paged through
verified contact methods, named tenant channels, repeats on schedule, nothing after acknowledge or
resolve, step names validated per tenant, and two concurrent sweeps paging once."""
from __future__ import annotations

import threading
from datetime import date, time

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection

from apps.alerts import services
from apps.alerts.models import Alert, AlertState, EscalationPolicy, TimelineEntry
from apps.core.errors import Conflict
from apps.delivery.channel_services import create_channel, create_policy
from apps.delivery.models import Delivery
from apps.tenants.models import ContactMethod, OnCallRotation, TenantMembership

from .conftest import fire_kwargs

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    User = get_user_model()
    alice, bob = (User.objects.create_user(n, password="x" * 12) for n in ("alice", "bob"))
    for user, phone in ((alice, "+14155550101"), (bob, "+14155550102")):
        ContactMethod.objects.create(user=user, kind="email", value=f"{user.username}@acme.example", verified=True)
        ContactMethod.objects.create(user=user, kind="sms", value=phone, verified=True)
    ContactMethod.objects.create(user=alice, kind="sms", value="+14155550199")  # unverified: never paged
    return alice, bob


@pytest.fixture
def rotation(tenant, people):
    # Daily at 12:30 UTC; the clock (frozen) starts 2026-03-01 12:00, so alice until 12:30, then bob.
    alice, bob = people
    return OnCallRotation.objects.create(tenant=tenant, name="primary", users=[alice.pk, bob.pk], period="daily",
                                         handoff_time=time(12, 30), timezone="UTC", start_date=date(2026, 2, 28))


def oncall_policy(tenant, **step):
    return EscalationPolicy.objects.create(tenant=tenant, severity="critical", steps=[
        {"after_minutes": 5, "channels": ["email", "sms"], "oncall": "primary", **step}])


def pages(alert) -> list[tuple[str, str]]:
    return sorted((d.channel, d.recipients[0]) for d in Delivery.objects.filter(alert=alert, channel__in=["email", "sms"]))


def paging_lines(alert) -> list[str]:
    """The paging part of each escalation's timeline line."""
    return [m.partition("; ")[2] for m in TimelineEntry.objects.filter(alert=alert, kind="escalated")
            .values_list("message", flat=True)]


def test_step_pages_the_on_call_user_by_email_and_sms(tenant, plugin, rotation, people, frozen):
    oncall_policy(tenant)
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    frozen.advance(minutes=5)
    assert services.escalate_due() == 1
    assert pages(alert) == [("email", "alice@acme.example"), ("sms", "+14155550101")]
    assert paging_lines(alert) == ["paged alice by email, sms"]
    email = Delivery.objects.get(alert=alert, channel="email")
    assert email.event_type == "alert.escalated" and email.state == "PENDING"
    assert b"[ESCALATED] Checkout error burst" in bytes(email.body) and b"on call in primary" in bytes(email.body)
    assert Alert.objects.get(pk=alert.pk).delivery_state != "FAILED"  # pages do not decide the delivery state


def test_repeats_k_times_on_schedule_following_the_handoff(tenant, plugin, rotation, people, frozen):
    oncall_policy(tenant, repeat=2)
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    paged_at = []
    for _ in range(8):
        frozen.advance(minutes=4)
        before = Delivery.objects.filter(alert=alert).count()
        services.escalate_due()
        if Delivery.objects.filter(alert=alert).count() > before:
            paged_at.append(frozen().strftime("%H:%M"))
    assert paged_at == ["12:08", "12:16", "12:24"]  # due 12:05, 12:13, 12:21 (swept every 4 min); K = 2 repeats
    assert Alert.objects.get(pk=alert.pk).escalation_level == 3
    assert paging_lines(alert) == ["paged alice by email, sms"] * 3
    # The hand-off at 12:30: a new alert's first page goes to bob.
    frozen.advance(minutes=10)
    later = services.fire_alert(**fire_kwargs(tenant, plugin, group_key={"other": 1})).alert
    frozen.advance(minutes=5)
    services.escalate_due()
    assert pages(later) == [("email", "bob@acme.example"), ("sms", "+14155550102")]


@pytest.mark.parametrize("stop", ["acknowledge", "resolve"])
def test_no_page_after_acknowledge_or_resolve(tenant, plugin, rotation, people, frozen, stop):
    oncall_policy(tenant, repeat=5)
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    frozen.advance(minutes=5)
    assert services.escalate_due() == 1
    if stop == "acknowledge":
        services.alert_acknowledge(alert_id=alert.pk, actor=None)
    else:
        services.alert_resolve(alert_id=alert.pk, actor=None)
    for _ in range(6):
        frozen.advance(minutes=5)
        assert services.escalate_due() == 0
    assert len(pages(alert)) == 2 and paging_lines(alert) == ["paged alice by email, sms"]


def test_a_stale_sweep_after_acknowledge_pages_nobody(tenant, plugin, rotation, people, frozen):
    """A sweep that read the alert as due just before the acknowledgement committed."""
    oncall_policy(tenant, repeat=5)
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    frozen.advance(minutes=5)
    services.escalate_due()
    frozen.advance(minutes=5)
    level = Alert.objects.get(pk=alert.pk).escalation_level
    services.alert_acknowledge(alert_id=alert.pk, actor=None)
    with pytest.raises(Conflict, match="is ACKNOWLEDGED; cannot escalate"):
        services.alert_escalate(alert_id=alert.pk, expected_level=level)
    assert len(pages(alert)) == 2


def test_role_group_pages_members_and_names_the_unreachable(tenant, plugin, people, frozen):
    alice, bob = people
    carol = get_user_model().objects.create_user("carol", password="x" * 12)
    for user, role in ((alice, "operator"), (bob, "viewer"), (carol, "operator")):
        TenantMembership.objects.create(user=user, tenant=tenant, role=role)
    EscalationPolicy.objects.create(tenant=tenant, severity="critical",
                                    steps=[{"after_minutes": 1, "channels": ["webhook", "sms"], "group": "operator"}])
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    frozen.advance(minutes=1)
    services.escalate_due()
    assert pages(alert) == [("sms", "+14155550101")]
    assert paging_lines(alert) == ["paged alice by sms; no verified sms contact for carol"]


def test_named_channel_is_notified_once_even_when_routing_sent_it_too(tenant, plugin, frozen):
    ops, _ = create_channel(tenant=tenant, kind="email", name="ops-list", config={"recipients": "ops@acme.example"})
    create_channel(tenant=tenant, kind="email", name="pager-list", config={"recipients": "p@acme.example"})
    create_policy(tenant=tenant, name="all", channels=[ops.pk])  # routing already sends every change to ops-list
    EscalationPolicy.objects.create(tenant=tenant, severity="critical", repeat=1, steps=[
        {"after_minutes": 1, "channels": ["ops-list", "pager-list"]}])
    alert = services.fire_alert(**fire_kwargs(tenant, plugin)).alert
    for _ in range(2):
        frozen.advance(minutes=1)
        assert services.escalate_due() == 1
    sent = list(Delivery.objects.filter(alert=alert, event_type="alert.escalated")
                .values_list("notification_channel__name", flat=True))
    assert sorted(sent) == ["ops-list", "ops-list", "pager-list", "pager-list"]  # one per channel per level
    assert paging_lines(alert) == ["notified ops-list, pager-list"] * 2


def test_step_names_are_validated_per_tenant(tenant, other_tenant, people):
    create_channel(tenant=tenant, kind="email", name="ops-list", config={"recipients": "ops@acme.example"})
    OnCallRotation.objects.create(tenant=tenant, name="primary", users=[people[0].pk], period="daily",
                                  handoff_time=time(9), start_date=date(2026, 1, 1))

    def check(tenant_, steps, repeat=0):
        EscalationPolicy(tenant=tenant_, severity="critical", steps=steps, repeat=repeat).full_clean()

    check(tenant, [{"after_minutes": 1, "channels": ["ops-list", "sms"], "group": {"oncall": "primary"}}])
    with pytest.raises(ValidationError, match="step 1: channels: unknown channel 'pagerduty-primary' for this tenant"):
        check(tenant, [{"after_minutes": 1, "channels": ["ops-list"]},
                       {"after_minutes": 1, "channels": ["pagerduty-primary"]}])
    with pytest.raises(ValidationError, match="step 0: channels: unknown channel 'ops-list'"):
        check(other_tenant, [{"after_minutes": 1, "channels": ["ops-list"]}])
    with pytest.raises(ValidationError, match="step 0: oncall: unknown rotation 'nights' for this tenant"):
        check(tenant, [{"after_minutes": 1, "channels": ["email"], "oncall": "nights"}])
    with pytest.raises(ValidationError, match="step 0: oncall: unknown rotation 'primary' for a policy without a tenant"):
        check(None, [{"after_minutes": 1, "channels": ["email"], "oncall": "primary"}])
    with pytest.raises(ValidationError, match="step 0: oncall 'primary' pages through contact methods"):
        check(tenant, [{"after_minutes": 1, "channels": ["webhook"], "oncall": "primary"}])
    with pytest.raises(ValidationError, match="step 0: a repeated step needs after_minutes >= 1"):
        check(tenant, [{"after_minutes": 0, "channels": ["email"], "repeat": 2}, {"after_minutes": 3}])
    with pytest.raises(ValidationError, match="step 0: unknown key\\(s\\) pager"):
        check(tenant, [{"after_minutes": 1, "pager": True}])
    policy = EscalationPolicy(tenant=tenant, severity="critical",
                              steps=[{"after_minutes": 1, "channels": ["sms"], "group": {"oncall": "primary"}}])
    policy.full_clean()
    assert policy.steps == [{"after_minutes": 1, "channels": ["sms"], "group": "", "oncall": "primary"}]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_page_once(tenant, plugin, rotation, people, frozen):
    oncall_policy(tenant)
    alerts = [services.fire_alert(**fire_kwargs(tenant, plugin, group_key={"n": i})).alert for i in range(5)]
    frozen.advance(minutes=5)
    barrier = threading.Barrier(2)
    done: list[int] = []
    errors: list[BaseException] = []

    def sweep():
        try:
            barrier.wait(5)
            done.append(services.escalate_due())
        except BaseException as exc:  # reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sum(done) == 5
    for alert in alerts:
        assert pages(alert) == [("email", "alice@acme.example"), ("sms", "+14155550101")]
        assert paging_lines(alert) == ["paged alice by email, sms"]
        assert Alert.objects.get(pk=alert.pk).state == AlertState.ESCALATED


def test_admin_refuses_a_step_naming_an_unknown_rotation(client, tenant):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password"))
    form = {"tenant": tenant.pk, "severity": "critical", "repeat": "0", "enabled": "on",
            "steps": '[{"after_minutes": 5, "channels": ["email"], "oncall": "nights"}]'}
    resp = client.post("/admin/alerts/escalationpolicy/add/", form)
    assert resp.status_code == 200 and "step 0: oncall: unknown rotation &#x27;nights&#x27; for this tenant" in (
        resp.content.decode())
    assert not EscalationPolicy.objects.exists()
