"""Rotations and contact methods as stored: validation naming the bad field, audited admin saves with
the "on call now" display, and the ``oncall`` command."""
from __future__ import annotations

import io
from datetime import date, time

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent
from apps.tenants.models import ContactMethod, OnCallRotation
from tests.alerts.conftest import frozen  # noqa: F401  (controllable clock, starts 2026-03-01 12:00 UTC)

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    User = get_user_model()
    return [User.objects.create_user(name, password="x" * 12) for name in ("alice", "bob", "carol")]


@pytest.fixture
def rotation(tenant, people):
    return OnCallRotation.objects.create(tenant=tenant, name="primary", users=[u.pk for u in people], period="daily",
                                         handoff_time=time(9, 0), timezone="Europe/Berlin", start_date=date(2026, 2, 28))


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_rotation_validation_names_the_field(tenant, people):
    base = dict(tenant=tenant, name="r", users=[people[0].pk], handoff_time=time(9, 0), start_date=date(2026, 3, 1))
    with pytest.raises(ValidationError, match="'Mars/Olympus' is not an IANA time zone"):
        OnCallRotation.objects.create(**base, period="daily", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="a weekly rotation needs a hand-off weekday"):
        OnCallRotation.objects.create(**base, period="weekly")
    with pytest.raises(ValidationError, match="no user with id 999999"):
        OnCallRotation.objects.create(**{**base, "users": [people[0].pk, 999999]}, period="daily")
    with pytest.raises(ValidationError, match="non-empty list of user ids"):
        OnCallRotation.objects.create(**{**base, "users": []}, period="daily")
    assert not OnCallRotation.objects.exists()


def test_contact_method_validation(people):
    with pytest.raises(ValidationError, match="not an E.164 phone number"):
        ContactMethod.objects.create(user=people[0], kind="sms", value="0170 123")
    with pytest.raises(ValidationError, match="not a valid email address"):
        ContactMethod.objects.create(user=people[0], kind="email", value="alice@")
    assert ContactMethod.objects.create(user=people[0], kind="sms", value="+4917012345678").verified is False


def test_oncall_command_prints_who_and_next_handoffs(tenant, rotation, frozen):
    # 2026-03-01 12:00 UTC = 13:00 CET: the shift of 1 March 09:00 (the second since 28 Feb) is bob's.
    out = run("oncall", "acme", "--next", "2")
    assert out.splitlines() == [
        "primary: bob on call now (since 2026-03-01 09:00 CET)",
        "  2026-03-02 09:00 CET -> carol",
        "  2026-03-03 09:00 CET -> alice",
    ]
    assert run("oncall", "acme", "primary", "--next", "0") == "primary: bob on call now (since 2026-03-01 09:00 CET)\n"
    with pytest.raises(CommandError, match="tenant 'acme' has no rotation 'nights'"):
        run("oncall", "acme", "nights")
    with pytest.raises(CommandError, match="no tenant 'nope'"):
        run("oncall", "nope")


@pytest.fixture
def root(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password"))
    return client


def test_rotation_admin_is_audited_and_shows_who_is_on_call(root, tenant, people, frozen):
    form = {"tenant": tenant.pk, "name": "primary", "users": f"[{people[1].pk}, {people[2].pk}]", "period": "weekly",
            "handoff_time": "10:00", "handoff_weekday": "0", "timezone": "UTC", "start_date": "2026-02-01"}
    resp = root.post("/admin/tenants/oncallrotation/add/", form)
    assert resp.status_code == 302, resp.context and resp.context["adminform"].form.errors
    rotation = OnCallRotation.objects.get()
    [event] = AuditEvent.objects.filter(action="oncall_rotation.created")
    assert (event.actor_label, event.tenant_id, event.data["users"]) == ("root", tenant.pk, [people[1].pk, people[2].pk])
    page = root.get(f"/admin/tenants/oncallrotation/{rotation.pk}/change/").content.decode()
    # Mondays since 2 Feb: 2 Feb bob, 9 carol, 16 bob, 23 carol -> carol on 1 March; bob from 2 March.
    assert "carol (since 2026-02-23 10:00 UTC)" in page and "<div>bob from 2026-03-02 10:00 UTC</div>" in page
    listing = root.get("/admin/tenants/oncallrotation/").content.decode()
    assert "carol (since 2026-02-23 10:00 UTC)" in listing

    bad = root.post("/admin/tenants/oncallrotation/add/", {**form, "name": "other", "timezone": "Nowhere/Land"})
    assert bad.status_code == 200 and "is not an IANA time zone" in bad.content.decode()


def test_contact_method_admin_is_audited(root, people):
    resp = root.post("/admin/tenants/contactmethod/add/", {"user": people[0].pk, "kind": "sms", "value": "+14155550100",
                                                           "verified": "on", "position": "0"})
    assert resp.status_code == 302, resp.context and resp.context["adminform"].form.errors
    [event] = AuditEvent.objects.filter(action="contact_method.created")
    assert event.data["user"] == "alice" and event.data["value"] == "+14155550100" and event.tenant_id is None
