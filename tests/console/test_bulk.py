"""Bulk resolve, suppress and assign from the alert list: what changes, what is skipped and why,
roles, CSRF, tenants, the limit and rows someone else holds."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from apps.alerts import services
from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.audit.models import AuditEvent
from apps.core import clock
from apps.core.errors import ApplicationError

from .test_actions import messages_of

pytestmark = pytest.mark.django_db


def states(*alerts) -> list[str]:
    return [Alert.objects.get(pk=a.pk).state for a in alerts]


def test_bulk_resolve_changes_the_active_and_names_the_skipped(login, make_alert):
    opened, acked = make_alert(), make_alert(state=AlertState.ACKNOWLEDGED)
    quiet = make_alert(state=AlertState.SUPPRESSED, suppressed_until=clock.now() + timedelta(hours=1))
    done = make_alert(state=AlertState.RESOLVED)
    resp = login("operator").post("/alerts/bulk-resolve", {
        "ids": [opened.pk, acked.pk, quiet.pk, done.pk], "resolve_note": "fixed by 4.3", "next": "/?state=all"},
        follow=True)
    assert resp.redirect_chain == [("/?state=all", 302)]
    assert messages_of(resp) == [f"Resolved 3 alert(s): #{opened.pk}, #{acked.pk}, #{quiet.pk}.",
                                 f"Skipped 1 alert(s): #{done.pk} is resolved."]
    assert states(opened, acked, quiet, done) == [AlertState.RESOLVED] * 4
    assert Alert.objects.get(pk=opened.pk).resolved_by == "operator"
    # Each alert its own history, as the single action writes it.
    assert list(TimelineEntry.objects.filter(kind="resolved").order_by("alert_id").values_list("alert_id", "message")) == [
        (opened.pk, "fixed by 4.3"), (acked.pk, "fixed by 4.3"), (quiet.pk, "fixed by 4.3")]
    audit = AuditEvent.objects.filter(action="alert.resolved").order_by("target_id")
    assert [(e.target_id, e.actor_label, e.data["message"]) for e in audit] == [
        (str(a.pk), "operator", "fixed by 4.3") for a in (opened, acked, quiet)]


def test_bulk_suppress_needs_a_reason_and_a_duration(login, make_alert, frozen):
    opened, acked = make_alert(), make_alert(state=AlertState.ACKNOWLEDGED)
    quiet = make_alert(state=AlertState.SUPPRESSED, suppressed_until=frozen.current + timedelta(hours=1))
    done = make_alert(state=AlertState.RESOLVED)
    client = login("operator")
    ids = [opened.pk, acked.pk, quiet.pk, done.pk]
    assert messages_of(client.post("/alerts/bulk-suppress", {"ids": ids, "duration": "soon", "reason": "deploy"},
                                   follow=True)) == [
        "Nothing changed: duration: bad duration 'soon' (use seconds or units like 30s, 5m, 1h, 1d, 1h30m)"]
    assert messages_of(client.post("/alerts/bulk-suppress", {"ids": ids, "duration": "31d", "reason": "deploy"},
                                   follow=True)) == ["Nothing changed: duration must be positive and at most 30 days"]
    assert messages_of(client.post("/alerts/bulk-suppress", {"ids": ids, "duration": "2h"}, follow=True)) == [
        "Nothing changed: reason: This field is required."]
    assert states(opened, acked) == [AlertState.OPEN, AlertState.ACKNOWLEDGED]

    resp = client.post("/alerts/bulk-suppress", {"ids": ids, "duration": "2h", "reason": "deploy"}, follow=True)
    assert messages_of(resp) == [
        f"Suppressed until 2026-03-01 14:00 UTC 2 alert(s): #{opened.pk}, #{acked.pk}.",
        f"Skipped 2 alert(s): #{quiet.pk} is suppressed; #{done.pk} is resolved."]
    for alert in (opened, acked):
        alert.refresh_from_db()
        assert (alert.state, alert.suppressed_until, alert.suppressed_reason) == (
            AlertState.SUPPRESSED, frozen.current + timedelta(hours=2), "deploy")
    assert AuditEvent.objects.filter(action="alert.suppressed").count() == 2


def test_bulk_assign_to_me_to_a_member_and_back_to_nobody(login, make_alert, make_console_user, tenant):
    a, b = make_alert(), make_alert(state=AlertState.ESCALATED)
    done = make_alert(state=AlertState.RESOLVED)
    client = login("operator")
    ids = [a.pk, b.pk, done.pk]
    resp = client.post("/alerts/bulk-assign", {"ids": ids, "assignee": "me"}, follow=True)
    assert messages_of(resp) == [f"Assigned to you 2 alert(s): #{a.pk}, #{b.pk}.",
                                 f"Skipped 1 alert(s): #{done.pk} is resolved."]
    assert Alert.objects.get(pk=a.pk).assignee.username == "operator"
    make_console_user("member", "mia")
    assert messages_of(client.post("/alerts/bulk-assign", {"ids": [a.pk], "assignee": "mia"}, follow=True)) == [
        f"Assigned to mia 1 alert(s): #{a.pk}."]
    assert messages_of(client.post("/alerts/bulk-assign", {"ids": [a.pk, b.pk], "assignee": "none"}, follow=True))[0] \
        == f"Unassigned 2 alert(s): #{a.pk}, #{b.pk}."
    assert not Alert.objects.filter(pk__in=[a.pk, b.pk], assignee__isnull=False).exists()
    assert messages_of(client.post("/alerts/bulk-assign", {"ids": ids, "assignee": "ghost"}, follow=True)) == [
        "Nothing changed: no active user 'ghost'"]
    assert messages_of(client.post("/alerts/bulk-assign", {"ids": ids}, follow=True)) == [
        "Nothing changed: assignee: This field is required."]
    assert list(TimelineEntry.objects.filter(alert=a, kind="assigned").values_list("message", flat=True)) == [
        "took ownership", "assigned to mia", "unassigned"]


def test_bulk_assign_skips_alerts_of_tenants_the_assignee_cannot_work(login, make_alert, make_console_user,
                                                                      other_tenant):
    mine, theirs = make_alert(), make_alert(tenant=other_tenant, plugin=None)
    make_console_user("member", "mia")  # operator of acme only
    client = login("operator")
    resp = client.post("/alerts/bulk-assign", {"ids": [mine.pk, theirs.pk], "assignee": "mia"}, follow=True)
    assert messages_of(resp) == [f"Assigned to mia 1 alert(s): #{mine.pk}.",
                                 f"Skipped 1 alert(s): #{theirs.pk} mia is not a member of its tenant."]
    assert Alert.objects.get(pk=theirs.pk).assignee is None
    # Only alerts of tenants mia cannot work: refused like an unknown name (no hint that she exists).
    resp = client.post("/alerts/bulk-assign", {"ids": [theirs.pk], "assignee": "mia"}, follow=True)
    assert messages_of(resp) == ["Nothing changed: no active user 'mia'"]
    with pytest.raises(ApplicationError, match="no active user 'mia'"):
        services.alerts_assign_bulk(alerts=Alert.objects.filter(pk=theirs.pk), actor=None,
                                    assignee=User.objects.get(username="mia"))


@pytest.mark.parametrize("role", ["auditor", "governance", "member-viewer"])
def test_read_only_roles_get_403(login, make_alert, role):
    alert = make_alert()
    client = login(role)
    for url, data in (("/alerts/bulk-resolve", {}), ("/alerts/bulk-suppress", {"duration": "1h", "reason": "x"}),
                      ("/alerts/bulk-assign", {"assignee": "me"})):
        assert client.post(url, {"ids": [alert.pk], **data}).status_code == 403, url
    assert states(alert) == [AlertState.OPEN] and not TimelineEntry.objects.exists()


def test_bulk_actions_enforce_csrf_and_post(login, make_alert):
    alert = make_alert()
    client = login("operator", csrf=True)
    for url in ("/alerts/bulk-resolve", "/alerts/bulk-suppress", "/alerts/bulk-assign"):
        assert client.post(url, {"ids": [alert.pk], "duration": "1h", "reason": "x", "assignee": "me"}
                           ).status_code == 403, url
        assert client.get(url).status_code == 405, url
    assert states(alert) == [AlertState.OPEN]
    token = client.get("/").cookies["csrftoken"].value
    assert client.post("/alerts/bulk-resolve", {"ids": [alert.pk], "csrfmiddlewaretoken": token}).status_code == 302
    assert states(alert) == [AlertState.RESOLVED]


def test_other_tenants_ids_are_ignored(login, make_alert, other_tenant):
    mine, theirs = make_alert(), make_alert(tenant=other_tenant, plugin=None)
    client = login("member")
    for url, data in (("/alerts/bulk-assign", {"assignee": "me"}), ("/alerts/bulk-suppress",
                      {"duration": "1h", "reason": "x"}), ("/alerts/bulk-resolve", {})):
        resp = client.post(url, {"ids": [theirs.pk, 999_999], **data}, follow=True)
        assert messages_of(resp) == [f"Skipped 2 alert(s): #{theirs.pk}, #999999 not found or not yours to work."]
    theirs.refresh_from_db()
    assert (theirs.state, theirs.assignee_id) == (AlertState.OPEN, None)
    assert not TimelineEntry.objects.filter(alert=theirs).exists()
    assert messages_of(client.post("/alerts/bulk-resolve", {"ids": [mine.pk, theirs.pk]}, follow=True)) == [
        f"Resolved 1 alert(s): #{mine.pk}.", f"Skipped 1 alert(s): #{theirs.pk} not found or not yours to work."]


def test_nothing_ticked(login):
    client = login("operator")
    for url, verb in (("/alerts/bulk-resolve", "resolve"), ("/alerts/bulk-suppress", "suppress"),
                      ("/alerts/bulk-assign", "assign")):
        assert messages_of(client.post(url, {"duration": "1h", "reason": "x", "assignee": "me"}, follow=True)) == [
            f"Tick at least one alert to {verb}."]


def test_the_limit_is_honoured_and_the_rest_reported(make_alert):
    alerts = [make_alert() for _ in range(3)]
    outcome = services.alerts_resolve_bulk(alerts=Alert.objects.filter(pk__in=[a.pk for a in alerts]), actor=None,
                                           limit=2)
    assert outcome.done == [alerts[0].pk, alerts[1].pk]
    assert outcome.skipped == {alerts[2].pk: "over the limit of 2 alerts per request"}
    assert states(*alerts) == [AlertState.RESOLVED, AlertState.RESOLVED, AlertState.OPEN]


@pytest.mark.django_db(transaction=True)
def test_a_row_someone_else_holds_is_skipped_not_waited_for(make_alert):
    held, free = make_alert(), make_alert()
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Alert.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()  # this thread's own connection

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        outcome = services.alerts_suppress_bulk(alerts=Alert.objects.filter(pk__in=[held.pk, free.pk]), actor=None,
                                                duration=timedelta(hours=1), reason="maintenance")
    finally:
        release.set()
        holder.join()
    assert outcome.done == [free.pk]
    assert outcome.skipped == {held.pk: "being changed by someone else right now"}
    assert states(held, free) == [AlertState.OPEN, AlertState.SUPPRESSED]
