"""Alert list (filters, tabs, search, sort, pagination, live partial) and detail pages."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User

from apps.alerts.models import AlertState
from apps.core import clock
from apps.delivery.models import Delivery
from apps.ingest.models import EventRecord
from apps.tenants.models import Plugin

pytestmark = pytest.mark.django_db


def ids(resp) -> list[int]:
    return [a.pk for a in resp.context["alerts"]]


def test_default_tab_is_active_alerts_with_counts_per_state(login, make_alert):
    open_, acked = make_alert(), make_alert(state=AlertState.ACKNOWLEDGED)
    make_alert(state=AlertState.RESOLVED)
    client = login("auditor")
    resp = client.get("/")
    assert set(ids(resp)) == {open_.pk, acked.pk}
    counts = {t["key"]: t["count"] for t in resp.context["tabs"]}
    assert counts == {"active": 2, "OPEN": 1, "ACKNOWLEDGED": 1, "ESCALATED": 0, "SUPPRESSED": 0, "RESOLVED": 1,
                      "all": 3}
    assert len(ids(client.get("/?state=RESOLVED"))) == 1


def test_filters_live_in_the_query_string(login, make_alert, tenant, plugin, other_tenant):
    other_plugin = Plugin.objects.create(tenant=tenant, slug="search")
    bob = User.objects.create_user("bob", is_staff=True)
    a = make_alert(severity="warning", title="Slow queries", rule_key="slow")
    b = make_alert(severity="critical", plugin=other_plugin, assignee=bob, summary="disk full on search-3")
    c = make_alert(severity="emergency", tenant=other_tenant, plugin=None)
    old = make_alert(created_at=clock.now() - timedelta(days=3))
    client = login("operator")
    assert ids(client.get("/?severity=warning&severity=emergency")) == [c.pk, a.pk]
    assert ids(client.get("/?tenant=globex")) == [c.pk]
    assert ids(client.get("/?plugin=search")) == [b.pk]
    assert ids(client.get("/?rule=slow")) == [a.pk]
    assert ids(client.get("/?assignee=bob")) == [b.pk]
    assert set(ids(client.get("/?assignee=none"))) == {a.pk, c.pk, old.pk}
    assert ids(client.get("/?q=DISK+full")) == [b.pk]
    assert old.pk not in ids(client.get("/?range=24h"))
    # A bad value is ignored rather than failing the page.
    assert client.get("/?severity=bogus&range=99y&sort=nope").status_code == 200
    # Tabs keep the other filters.
    assert 'href="?tenant=globex&amp;state=RESOLVED"' in client.get("/?tenant=globex").content.decode()


def test_assigned_to_me(login, make_alert, make_console_user):
    client = login("operator")
    me = User.objects.get(username="operator")
    mine = make_alert(assignee=me)
    make_alert()
    assert ids(client.get("/?assignee=me")) == [mine.pk]


def test_sort_and_pagination(login, make_alert, frozen):
    alerts = []
    for i in range(55):
        frozen.advance(seconds=1)
        alerts.append(make_alert(count=i, severity="emergency" if i == 3 else "warning"))
    client = login("operator")
    first = client.get("/")
    assert len(ids(first)) == 50 and ids(first)[0] == alerts[-1].pk
    assert len(ids(client.get("/?page=2"))) == 5
    assert ids(client.get("/?sort=oldest"))[0] == alerts[0].pk
    assert ids(client.get("/?sort=severity"))[0] == alerts[3].pk
    assert ids(client.get("/?sort=count"))[0] == alerts[-1].pk


def test_a_search_stops_counting_at_the_cap_and_still_pages(login, make_alert, monkeypatch):
    monkeypatch.setattr("apps.console.selectors.SEARCH_COUNT_CAP", 60)
    for i in range(70):
        make_alert(title=f"disk full {i}")
    make_alert(title="disk full, resolved", state=AlertState.RESOLVED)
    make_alert(title="unrelated")
    client = login("operator")
    few = client.get("/?q=unrelated")  # under the cap: exact counts, as without a search
    assert {t["key"]: t["count"] for t in few.context["tabs"]}["active"] == 1 and not few.context["count_capped"]
    many = client.get("/?q=disk")
    counts = {t["key"]: t["count"] for t in many.context["tabs"]}
    assert counts["active"] == "60+" and counts["all"].endswith("+") and many.context["count_capped"]
    assert len(ids(many)) == 50 and "more than 60" in many.content.decode()
    assert len(ids(client.get("/?q=disk&page=2"))) == 11  # the page after the first still shows (61 = cap + 1)
    exact = client.get("/?q=disk&state=RESOLVED")  # this tab's own count is under the cap: exact
    assert {t["key"]: t["count"] for t in exact.context["tabs"]}["RESOLVED"] == 1


def test_the_live_partial_has_the_tabs_and_rows(login, make_alert):
    alert = make_alert(title="Fresh one")
    resp = login("operator").get("/alerts/rows?state=active")
    body = resp.content.decode()
    assert resp.status_code == 200 and resp["Cache-Control"] == "no-store"
    assert 'id="state-tabs"' in body and 'id="alert-rows"' in body and f'data-id="{alert.pk}"' in body
    assert "<html" not in body


def test_empty_states_say_what_to_do(login, make_alert):
    client = login("operator")
    assert "All quiet: no active alerts." in client.get("/").content.decode()
    assert "No alerts match these filters." in client.get("/?q=nothing-like-this").content.decode()
    assert "cannot see any tenant" in login("nobody-member").get("/").content.decode()


def test_tenant_members_see_only_their_tenant(login, make_alert, other_tenant):
    mine = make_alert()
    theirs = make_alert(tenant=other_tenant, plugin=None)
    client = login("member")
    assert ids(client.get("/?state=all")) == [mine.pk]
    assert ids(client.get("/?state=all&tenant=globex")) == []
    assert client.get(f"/alerts/{theirs.pk}").status_code == 404
    assert client.get(f"/alerts/{mine.pk}").status_code == 200
    assert client.get("/alerts/999999").status_code == 404


def test_detail_shows_everything_an_operator_needs(login, make_alert, tenant, plugin):
    alert = make_alert(title="Checkout error burst", summary="25 errors", recommended_action="Roll back",
                       trace_ids=["trace-abc"], window_seconds=300, count=25)
    EventRecord.objects.create(tenant=tenant, plugin=plugin, ts=alert.first_seen, level="ERROR", level_no=40,
                               message="card [MASKED:card] declined", rule_keys=[alert.rule_key],
                               received_at=clock.now())
    EventRecord.objects.create(tenant=tenant, plugin=plugin, ts=alert.first_seen, level="ERROR", level_no=40,
                               message="other rule's line", rule_keys=["other"], received_at=clock.now())
    body = login("operator").get(f"/alerts/{alert.pk}").content.decode()
    for text in ("Checkout error burst", "25 errors", "Roll back", "trace-abc", "card [MASKED:card] declined",
                 "/admin/rules/logrule/?key=plugin-error-burst", "5m window", "Acknowledge", "Email now"):
        assert text in body, text
    assert "other rule&#x27;s line" not in body


def test_a_delivery_whose_attempt_log_was_purged_says_so(login, make_alert, settings):
    """Retention removes attempt rows after DELIVERY_ATTEMPT_RETENTION_DAYS; the delivery keeps its
    outcome, and the page shows that rather than "No attempt yet"."""
    settings.DELIVERY_ATTEMPT_RETENTION_DAYS = 30
    alert = make_alert()
    now = clock.now()
    Delivery.objects.create(
        tenant_id=alert.tenant_id, alert=alert, event_type="alert.triggered", msg_id="msg_purged", body=b"{}",
        state="FAILED", attempts=4, last_status_code=503, last_error="HTTP 503 from receiver",
        created_at=now, expires_at=now)
    Delivery.objects.create(tenant_id=alert.tenant_id, alert=alert, event_type="alert.escalated",
                            msg_id="msg_fresh", body=b"{}", created_at=now, expires_at=now)
    body = login("operator").get(f"/alerts/{alert.pk}").content.decode()
    assert ("4 attempts, no longer kept (the attempt log is kept 30 days); the last answered HTTP 503; "
            "its error: HTTP 503 from receiver.") in body
    assert body.count("No attempt yet.") == 1  # the escalation not sent yet


def test_read_only_roles_get_no_action_buttons(login, make_alert):
    alert = make_alert()
    for role in ("auditor", "governance", "member-viewer"):
        body = login(role).get(f"/alerts/{alert.pk}").content.decode()
        assert "Acknowledge" not in body and "Add note" not in body, role
