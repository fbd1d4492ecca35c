"""Signed report links: the API issues them, they work without a token until they expire (410),
an altered or forged one is 404, every use is audited, and tenants stay apart."""
from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from urllib.parse import urlsplit

import orjson
import pytest
from django.core import signing
from django.test import Client

from apps.audit.models import AuditEvent
from apps.reports import links
from apps.tenants.models import Plugin

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(frozen, tenant, plugin, second_plugin, make_alert, make_record):
    now = frozen()
    made = make_alert(first_seen=now - timedelta(minutes=2), last_seen=now, trace_ids=["trace-a"])
    make_record(tenant, plugin, now - timedelta(minutes=1), "checkout failed", trace_id="trace-a")
    make_record(tenant, second_plugin, now, "payment declined", trace_id="trace-a")
    return made


def _path(url: str) -> str:
    return urlsplit(url).path


def test_api_issues_links_that_download_without_a_token_and_are_audited(alert, frozen, api, make_token):
    token = make_token(alert.tenant, "alerts:read")
    resp = api(token).post(f"/api/v1/alerts/{alert.pk}/report")
    assert resp.status_code == 201, resp.content
    body = resp.json()
    assert body["expires_at"] == (frozen() + timedelta(hours=24)).isoformat()
    assert AuditEvent.objects.filter(action="report.link_created", target_id=str(alert.pk)).count() == 1

    anonymous = Client()
    ndjson = anonymous.get(_path(body["ndjson_url"]))
    assert ndjson.status_code == 200 and ndjson["Content-Type"] == "application/x-ndjson"
    assert [orjson.loads(line)["message"] for line in ndjson.content.splitlines()] == [
        "checkout failed", "payment declined"]
    archive = anonymous.get(_path(body["zip_url"]))
    assert archive.status_code == 200 and archive["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert orjson.loads(z.read("report.json"))["alert"]["id"] == alert.pk

    used = AuditEvent.objects.filter(action="report.downloaded", target_id=str(alert.pk)).order_by("id")
    assert [(e.data["format"], e.data["lines"], e.tenant_id, e.actor_label) for e in used] == [
        ("ndjson", 2, alert.tenant_id, "signed link"), ("zip", 2, alert.tenant_id, "signed link")]


def test_link_needs_alerts_read(alert, api, make_token):
    token = make_token(alert.tenant, "logs:write")
    assert api(token).post(f"/api/v1/alerts/{alert.pk}/report").status_code == 403


def test_expired_link_is_gone_with_a_clear_message(alert, frozen, settings):
    settings.DIAGNOSTIC_LINK_MAX_AGE_SECONDS = 3600
    token, expires_at = links.issue(tenant_id=alert.tenant_id, alert_id=alert.pk)
    assert Client().get(f"/reports/{token}/lines.ndjson").status_code == 200

    frozen.advance(seconds=3600)
    resp = Client().get(f"/reports/{token}/report.zip")
    assert resp.status_code == 410
    error = resp.json()["error"]
    assert error["code"] == "link_expired" and expires_at.isoformat() in error["message"]
    assert AuditEvent.objects.filter(action="report.downloaded").count() == 1  # the expired try is no download


def test_default_expiry_is_24_hours(alert, frozen):
    token, _ = links.issue(tenant_id=alert.tenant_id, alert_id=alert.pk)
    frozen.advance(hours=23, minutes=59)
    assert Client().get(f"/reports/{token}/lines.ndjson").status_code == 200
    frozen.advance(minutes=1)
    assert Client().get(f"/reports/{token}/lines.ndjson").status_code == 410


def test_tampered_or_forged_links_are_not_found(alert, other_tenant, make_alert):
    token, _ = links.issue(tenant_id=alert.tenant_id, alert_id=alert.pk)
    payload, stamp, signature = token.split(":")
    other_alert = make_alert(tenant=other_tenant, plugin=Plugin.objects.create(tenant=other_tenant, slug="x"))
    forged_payload = signing.b64_encode(orjson.dumps({"t": other_tenant.pk, "a": other_alert.pk,
                                                      "e": 4102444800})).decode()
    candidates = [
        f"{payload}:{stamp}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",  # signature altered
        f"{forged_payload}:{stamp}:{signature}",                                          # payload swapped
        signing.TimestampSigner(key="guessed-key", salt=links.SALT).sign_object(
            {"t": other_tenant.pk, "a": other_alert.pk, "e": 4102444800}),            # wrong key
        signing.TimestampSigner(salt="some.other.salt").sign_object(
            {"t": other_tenant.pk, "a": other_alert.pk, "e": 4102444800}),            # our key, another use
        "garbage",
    ]
    for candidate in candidates:
        resp = Client().get(f"/reports/{candidate}/lines.ndjson")
        assert resp.status_code == 404, candidate
        assert resp.json()["error"]["code"] == "not_found"
    assert not AuditEvent.objects.filter(action="report.downloaded").exists()


def test_a_link_only_opens_its_own_tenants_alert(alert, other_tenant, make_alert):
    # Genuinely signed but naming a tenant that does not own the alert: the rows must agree too.
    other_alert = make_alert(tenant=other_tenant, plugin=Plugin.objects.create(tenant=other_tenant, slug="x"))
    token, _ = links.issue(tenant_id=alert.tenant_id, alert_id=other_alert.pk)
    assert Client().get(f"/reports/{token}/lines.ndjson").status_code == 404


def test_another_tenants_alert_is_404_on_the_api(alert, other_tenant, api, make_token):
    token = make_token(other_tenant, "alerts:read")
    resp = api(token).post(f"/api/v1/alerts/{alert.pk}/report")
    assert resp.status_code == 404
    assert not AuditEvent.objects.filter(action="report.link_created").exists()


def test_platform_token_may_ask_for_any_tenant(alert, api, make_token):
    assert api(make_token(None, "alerts:read")).post(f"/api/v1/alerts/{alert.pk}/report").status_code == 201


def test_console_report_page_lists_lines_and_fresh_links(alert, login, make_console_user, frozen):
    member = login("member")
    page = member.get(f"/alerts/{alert.pk}/report")
    assert page.status_code == 200
    html = page.content.decode()
    assert "checkout failed" in html and "payment declined" in html
    link = next(part.split('"')[0] for part in html.split('href="') if "/lines.ndjson" in part.split('"')[0])
    assert Client().get(_path(link)).status_code == 200
    assert f'href="/alerts/{alert.pk}/report"' in member.get(f"/alerts/{alert.pk}").content.decode()


def test_console_report_page_of_another_tenant_is_404(alert, other_tenant, make_alert, login):
    other_alert = make_alert(tenant=other_tenant, plugin=Plugin.objects.create(tenant=other_tenant, slug="x"))
    assert login("member").get(f"/alerts/{other_alert.pk}/report").status_code == 404
