"""Silences page: list by status, preview before create, create, expire; who may."""
from __future__ import annotations

from datetime import timedelta

import pytest

from apps.alerts.models import AlertState, Silence
from apps.alerts.silences import silence_create
from apps.core import clock

pytestmark = pytest.mark.django_db


def test_preview_shows_matching_active_alerts_and_saves_nothing(login, make_alert, tenant):
    hit = make_alert(rule_key="slow", title="Slow queries")
    make_alert(rule_key="other")
    make_alert(rule_key="slow", state=AlertState.RESOLVED)
    resp = login("operator").post("/silences/new", {"tenant": "acme", "rule": "slow", "duration": "2h",
                                                    "reason": "maintenance", "preview": "1"})
    assert resp.status_code == 200 and [a.pk for a in resp.context["preview"]] == [hit.pk]
    assert "1 active alert match" in resp.content.decode()
    assert not Silence.objects.exists()


def test_create_and_expire(login, tenant):
    client = login("operator")
    resp = client.post("/silences/new", {"tenant": "acme", "plugin": "checkout", "severity": "warning",
                                         "labels": "env=prod", "duration": "2h", "reason": "deploy", "create": "1"},
                       follow=True)
    silence = Silence.objects.get()
    assert silence.tenant == tenant and silence.matchers == {"plugin": "checkout", "severity": "warning",
                                                             "labels": {"env": "prod"}}
    assert abs((silence.ends_at - clock.now()) - timedelta(hours=2)) < timedelta(seconds=30)
    assert str(list(resp.context["messages"])[0]).startswith(f"Silence #{silence.pk} active until")
    assert "deploy" in client.get("/silences").content.decode()
    resp = client.post(f"/silences/{silence.pk}/expire", follow=True)
    assert str(list(resp.context["messages"])[-1]).startswith(f"Silence #{silence.pk} expired")
    assert "deploy" in client.get("/silences?status=expired").content.decode()
    resp = client.post(f"/silences/{silence.pk}/expire", follow=True)
    assert str(list(resp.context["messages"])[-1]) == f"silence {silence.pk} has already ended"


def test_bad_input_is_shown_on_the_form(login):
    resp = login("operator").post("/silences/new", {"tenant": "acme", "labels": "nonsense", "duration": "soon",
                                                    "reason": "", "create": "1"})
    assert resp.status_code == 200 and not Silence.objects.exists()
    assert set(resp.context["form"].errors) == {"labels", "duration", "reason"}


def test_who_may_silence(login, tenant, other_tenant):
    for role in ("auditor", "governance", "member-viewer"):
        client = login(role)
        assert client.get("/silences").status_code == 200
        assert client.get("/silences/new").status_code == 403, role
    member = login("member")
    assert member.get("/silences/new").status_code == 200
    # A tenant operator can only pick their tenant, never "every tenant" or another tenant.
    choices = [c for c, _ in member.get("/silences/new").context["form"].fields["tenant"].choices]
    assert choices == ["acme"]
    resp = member.post("/silences/new", {"tenant": "globex", "duration": "1h", "reason": "x", "create": "1"})
    assert resp.status_code == 200 and "tenant" in resp.context["form"].errors
    theirs = silence_create(actor="x", tenant_id=other_tenant.pk, matchers={}, reason="theirs",
                            ends_at=clock.now() + timedelta(hours=1))
    assert member.post(f"/silences/{theirs.pk}/expire").status_code == 404
    assert "theirs" not in member.get("/silences").content.decode()
