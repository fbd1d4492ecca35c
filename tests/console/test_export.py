"""The alert list's category filter and its CSV export: same filters, visible alerts only,
streamed, audited, spreadsheet formulas defused."""
from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import User
from django.core.signals import request_finished
from django.db import close_old_connections
from django.http import StreamingHttpResponse

from apps.alerts.models import AlertState
from apps.audit.models import AuditEvent
from apps.console.exports import CSV_COLUMNS
from apps.console.views import export

pytestmark = pytest.mark.django_db


def read_csv(resp) -> list[dict]:
    assert isinstance(resp, StreamingHttpResponse)
    body = b"".join(resp.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_category_filter_narrows_the_list_and_offers_the_present_categories(login, make_alert):
    sec = make_alert(category="security", title="Brute force")
    make_alert(category="error", title="Checkout errors")
    make_alert(category="capacity", title="Old disk", state=AlertState.RESOLVED)  # not active: not offered
    client = login("operator")
    resp = client.get("/?category=security")
    assert [a.pk for a in resp.context["alerts"]] == [sec.pk]
    assert resp.context["filtered"] is True
    assert resp.context["choices"]["categories"] == ["error", "security"]
    body = resp.content.decode()
    assert '<option selected>security</option>' in body and "Old disk" not in body
    assert [a.title for a in client.get("/?state=all&category=capacity").context["alerts"]] == ["Old disk"]
    # The live-refresh partial applies it too.
    assert [a.pk for a in client.get("/alerts/rows?category=security").context["alerts"]] == [sec.pk]


def test_export_has_the_columns_and_rows_of_the_filtered_list(login, make_alert, make_console_user):
    bob = make_console_user("auditor", "bob")
    wanted = make_alert(category="security", severity="emergency", title="Brute force", assignee=bob,
                        state=AlertState.ACKNOWLEDGED, acknowledged_by="alice", count=7)
    make_alert(category="error")
    client = login("operator")
    resp = client.get("/alerts/export.csv?category=security&severity=emergency")
    assert resp["Content-Type"] == "text/csv; charset=utf-8"
    assert resp["Content-Disposition"].startswith('attachment; filename="alerts-')
    assert resp["Cache-Control"] == "no-store"
    rows = read_csv(resp)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert rows == [{
        "id": str(wanted.pk), "tenant": "acme", "plugin": "checkout", "severity": "emergency", "state": "ACKNOWLEDGED",
        "delivery_state": "NONE", "title": "Brute force", "category": "security", "rule": "plugin-error-burst",
        "count": "7", "first_seen": wanted.first_seen.isoformat(), "last_seen": wanted.last_seen.isoformat(),
        "assignee": "bob", "acknowledged_by": "alice", "resolved_by": "", "url": f"http://testserver/alerts/{wanted.pk}",
    }]


def test_export_follows_the_state_tab_and_sort(login, make_alert):
    a, b = make_alert(count=3), make_alert(count=9)
    done = make_alert(state=AlertState.RESOLVED)
    client = login("operator")
    assert [r["id"] for r in read_csv(client.get("/alerts/export.csv?sort=count"))] == [str(b.pk), str(a.pk)]
    assert [r["id"] for r in read_csv(client.get("/alerts/export.csv?state=RESOLVED"))] == [str(done.pk)]
    assert len(read_csv(client.get("/alerts/export.csv?state=all"))) == 3


def test_export_holds_only_visible_alerts(login, make_alert, other_tenant):
    mine = make_alert()
    make_alert(tenant=other_tenant, plugin=None)
    client = login("member")
    assert [r["id"] for r in read_csv(client.get("/alerts/export.csv?state=all"))] == [str(mine.pk)]
    assert read_csv(client.get("/alerts/export.csv?tenant=globex")) == []


def test_export_is_streamed_in_rows(login, make_alert):
    for _ in range(3):
        make_alert()
    resp = login("operator").get("/alerts/export.csv")
    assert resp.streaming
    chunks = list(resp.streaming_content)
    assert len(chunks) == 4  # the header, then one chunk per alert: nothing is built up front


def test_export_is_audited_with_filters_and_row_count(login, make_alert):
    make_alert(category="security")
    make_alert(category="security")
    make_alert(category="error")
    client = login("operator")
    resp = client.get("/alerts/export.csv?category=security&q=&range=24h")
    assert not AuditEvent.objects.filter(action="alerts.exported").exists()  # nothing has left yet
    assert len(read_csv(resp)) == 2
    event = AuditEvent.objects.get(action="alerts.exported")
    assert event.actor_label == "operator" and event.actor_id == str(User.objects.get(username="operator").pk)
    assert event.data == {"filters": {"state": "active", "category": "security", "range": "24h"}, "rows": 2,
                          "complete": True}


def test_export_defuses_spreadsheet_formulas(login, make_alert):
    make_alert(title="=HYPERLINK(\"http://evil.example\",\"click\")", category="+cat", rule_key="-rule",
               acknowledged_by="@ops", resolved_by="\tx", state=AlertState.ACKNOWLEDGED)
    row = read_csv(login("operator").get("/alerts/export.csv"))[0]
    assert row["title"] == "'=HYPERLINK(\"http://evil.example\",\"click\")"
    assert (row["category"], row["rule"], row["acknowledged_by"], row["resolved_by"]) == ("'+cat", "'-rule", "'@ops",
                                                                                        "'\tx")
    assert row["count"] == "1" and row["severity"] == "critical"  # ordinary cells untouched


def test_export_needs_sign_in(client, make_alert):
    make_alert()
    resp = client.get("/alerts/export.csv")
    assert resp.status_code == 302 and resp["Location"].startswith("/login/")


def test_a_broken_off_download_is_audited_as_incomplete(make_console_user, make_alert, rf):
    for _ in range(3):
        make_alert()
    request = rf.get("/alerts/export.csv")
    request.user = make_console_user("operator")
    resp = export.alert_export(request)  # the view itself: the test client would wrap the stream
    chunks = iter(resp.streaming_content)
    next(chunks), next(chunks)  # the header and one row, then the client goes away and the server
    # closes the response (keeping the test's connection, as Django's test client does when it closes one)
    request_finished.disconnect(close_old_connections)
    try:
        resp.close()
    finally:
        request_finished.connect(close_old_connections)
    event = AuditEvent.objects.get(action="alerts.exported")
    assert (event.data["rows"], event.data["complete"]) == (1, False)
