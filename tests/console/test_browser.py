"""The console in a real browser (Debian's Chromium via Playwright) against a live server.

Few, fast journeys: sign in, an alert raised through the real ingest API appears in the list
without a reload, bulk acknowledge, work one alert on its page, the dashboard chart. Screenshots
go to CONSOLE_SCREENSHOT_DIR (default var/build/screenshots); any browser console error fails.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from django.conf import settings

from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.audit.models import AuditEvent
from apps.tenants.models import Plugin
from apps.tenants.tokens import issue_token

from .conftest import PASSWORD
from .seed import ensure_staff_groups, rich_dataset

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("CONSOLE_SCREENSHOT_DIR") or Path(settings.BASE_DIR) / "var" / "build" / "screenshots")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # here are ordinary blocking calls, so Django's async-safety guard does not apply.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    yield page
    context.close()
    assert errors == [], f"browser console errors: {errors}"


@pytest.fixture
def operator(make_console_user):
    ensure_staff_groups()
    return make_console_user("operator", "olivia")


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=whoami]")


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def ingest_error_burst(live_server, tenant, n: int = 25) -> int:
    """POST an error burst to the real ingest API, then run the detect step the worker would."""
    from apps.ingest import tenancy
    from apps.ingest.processing import process_batch

    tenancy.clear_caches()
    token = issue_token(name="browser", scopes="logs:write", tenant=tenant)[1]
    now = datetime.now(timezone.utc).isoformat()
    events = [{"ts": now, "level": "ERROR", "message": f"payment failed for order {i} password=hunter2",
               "tenant_id": tenant.slug, "plugin_id": "checkout", "trace_id": f"trace-{i}"} for i in range(n)]
    resp = requests.post(f"{live_server.url}/api/v1/logs", json=events, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 202, resp.text
    process_batch(batch_id=resp.json()["batch_id"])
    return resp.json()["accepted"]


@pytest.fixture
def default_rules(db):
    from apps.rules import engine
    from apps.rules.services import pack_import

    engine.reset_cache()
    pack_import(text=(Path(settings.BASE_DIR) / "fixtures" / "log_rules" / "default.yaml").read_text(),
                actor="test", source="pack:default")
    yield
    engine.reset_cache()


def test_live_list_shows_a_new_alert_without_reload_and_bulk_acknowledges(
        page, live_server, operator, tenant, other_tenant, default_rules, monkeypatch):
    monkeypatch.setattr("apps.ingest.tasks.detect_batch.delay", lambda batch_id: None)  # we run detect ourselves
    Plugin.objects.get_or_create(tenant=tenant, slug="checkout")
    rich_dataset(tenant, other_tenant)
    sign_in(page, "olivia")
    assert "operator" in page.inner_text("[data-testid=whoami]")
    rows_before = page.locator("#alert-rows tr.row").count()
    assert rows_before >= 4
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded

    assert ingest_error_burst(live_server, tenant) == 25
    new = Alert.objects.get(rule_key="plugin-error-burst", state=AlertState.OPEN, title__icontains="checkout",
                            fingerprint__regex=r"^[0-9a-f]{64}$")
    started = time.monotonic()
    page.wait_for_selector(f"#alert-rows tr[data-id='{new.pk}']", timeout=8_000)
    assert time.monotonic() - started < 8
    assert page.evaluate("window.__sameDocument") is True
    assert "hunter2" not in page.content()
    shoot(page, "alert-list")
    page.emulate_media(color_scheme="dark")
    shoot(page, "alert-list-dark")
    page.emulate_media(color_scheme="light")

    open_ids = list(Alert.objects.filter(tenant=tenant, state=AlertState.OPEN).order_by("-created_at")
                    .values_list("pk", flat=True)[:2])
    for alert_id in open_ids:
        page.check(f"#alert-rows input[name=ids][value='{alert_id}']")
    page.click("#bulk-ack")
    page.wait_for_selector(".msg-success")
    assert "Acknowledged 2 alert(s)" in page.inner_text(".messages")
    assert set(Alert.objects.filter(pk__in=open_ids).values_list("state", flat=True)) == {AlertState.ACKNOWLEDGED}


def test_work_an_alert_on_its_page(page, operator, tenant, other_tenant):
    main = rich_dataset(tenant, other_tenant)
    sign_in(page, "olivia")
    page.goto(f"/alerts/{main.pk}")
    assert "payment provider returned 502" in page.inner_text(".evidence")
    assert "timed out after 10 s" in page.inner_text(".attempts")
    shoot(page, "alert-detail")

    page.keyboard.press("a")  # the shortcut submits the acknowledge form
    page.wait_for_selector(".msg-success")
    assert f"Acknowledged alert #{main.pk}." in page.inner_text(".messages")
    page.fill("textarea[name=text]", "Rolled back checkout 4.2.1")
    page.click(".note-form button")
    page.wait_for_selector(".msg-success")
    page.fill("#resolve-form input[name=note]", "error rate back to baseline")
    page.click("#resolve-form button")
    page.wait_for_selector(".msg-success")
    assert "resolved" in page.inner_text(".detail-head .meta").lower()
    assert "Rolled back checkout 4.2.1" in page.inner_text(".timeline")
    main.refresh_from_db()
    assert main.state == AlertState.RESOLVED and main.resolved_by == "olivia"
    kinds = list(TimelineEntry.objects.filter(alert=main).values_list("kind", flat=True))
    assert kinds[-3:] == ["acknowledged", "note", "resolved"]
    assert list(AuditEvent.objects.filter(target_id=str(main.pk)).order_by("id").values_list("action", flat=True)) == [
        "alert.acknowledged", "alert.note", "alert.resolved"]
    shoot(page, "alert-detail-resolved")


def test_dashboard_renders_its_chart(page, operator, tenant, other_tenant):
    rich_dataset(tenant, other_tenant)
    sign_in(page, "olivia")
    page.goto("/dashboard")
    bars = page.locator("#hourly-chart svg rect[class^=sev-]")
    assert bars.count() >= 5
    assert page.inner_text("[data-active=emergency]") == "1"
    shoot(page, "dashboard")
    page.emulate_media(color_scheme="dark")
    shoot(page, "dashboard-dark")
    for name, url in (("silences", "/silences"), ("silence-new", "/silences/new?tenant=acme&rule=plugin-error-burst"),
                      ("audit", "/audit")):
        page.goto(url)
        shoot(page, name)
