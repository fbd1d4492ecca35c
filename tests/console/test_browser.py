"""The console in a real browser (Debian's Chromium via Playwright) against a live server.

Few, fast journeys: sign in, an alert raised through the real ingest API appears in the list
without a reload, bulk acknowledge, work one alert on its page, the dashboard chart, a tenant
member kept to their tenant, the audit CSV export, a governance user editing a rule in the admin
(a valid change saved, an invalid one refused next to the field), the plugin filter looking plugins
up as one types. Screenshots
go to CONSOLE_SCREENSHOT_DIR (default var/build/screenshots); any browser console error fails.
"""
from __future__ import annotations

import csv
import io
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from django.conf import settings

from apps.alerts.models import Alert, AlertState, TimelineEntry
from apps.alerts.services import alert_acknowledge
from apps.audit.exports import CSV_COLUMNS
from apps.audit.models import AuditEvent
from apps.rules.models import LogRule
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
    page.console_errors = errors  # expect_console_error() takes out the one a test provokes on purpose
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


def expect_console_error(page, text: str) -> None:
    """Exactly one console error containing ``text`` was logged (a test provoked it); drop it so
    the fixture's no-errors check covers everything else."""
    matching = [e for e in page.console_errors if text in e]
    assert len(matching) == 1, f"expected one console error with {text!r}, got {page.console_errors}"
    page.console_errors.remove(matching[0])


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

    # Three open alerts: the seeded warning, the seeded burst and the one the ingest API just raised.
    open_ids = list(Alert.objects.filter(tenant=tenant, state=AlertState.OPEN).order_by("-created_at")
                    .values_list("pk", flat=True)[:3])
    assert len(open_ids) == 3 and new.pk in open_ids
    for alert_id in open_ids:
        page.check(f"#alert-rows input[name=ids][value='{alert_id}']")
    page.click("#bulk-ack")
    page.wait_for_selector(".msg-success")
    assert "Acknowledged 3 alert(s)" in page.inner_text(".messages")
    assert set(Alert.objects.filter(pk__in=open_ids).values_list("state", flat=True)) == {AlertState.ACKNOWLEDGED}
    assert AuditEvent.objects.filter(action="alert.acknowledged", target_id__in=[str(i) for i in open_ids]).count() == 3
    for alert_id in open_ids:  # the list re-rendered after the redirect: acknowledged rows say so
        assert "acknowledged" in page.inner_text(f"#alert-rows tr[data-id='{alert_id}']").lower()


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


def test_a_tenant_member_sees_only_their_tenant(page, make_console_user, tenant, other_tenant):
    mine = rich_dataset(tenant, other_tenant)
    theirs = Alert.objects.get(tenant=other_tenant)
    make_console_user("member", "mia")  # TenantMembership of acme, not staff
    sign_in(page, "mia")
    whoami = page.inner_text("[data-testid=whoami]")
    assert "tenant operator" in whoami and "acme" in whoami and "globex" not in whoami

    page.goto("/?state=all")
    rows = page.locator("#alert-rows tr.row")
    assert rows.count() == Alert.objects.filter(tenant=tenant).count()
    assert page.locator(f"#alert-rows tr[data-id='{theirs.pk}']").count() == 0
    assert page.locator(f"#alert-rows tr[data-id='{mine.pk}']").count() == 1
    assert "Billing error burst" not in page.content()
    page.goto("/?state=all&tenant=globex")  # naming the other tenant in the URL does not widen the scope
    assert page.locator("#alert-rows tr.row").count() == 0

    # The direct URL of the other tenant's alert does not exist for her; her own one opens.
    response = page.goto(f"/alerts/{theirs.pk}")
    assert response.status == 404 and "Billing error burst" not in page.content()
    assert "Not found" in page.inner_text("h1") and "mia" in page.inner_text("[data-testid=whoami]")
    expect_console_error(page, "status of 404")  # Chromium logs the 404 document itself
    assert page.goto(f"/alerts/{mine.pk}").status == 200
    assert page.inner_text("h1").strip()


def test_audit_csv_export(page, operator, tenant, other_tenant):
    rich_dataset(tenant, other_tenant)
    acked = list(Alert.objects.filter(tenant=tenant, state=AlertState.OPEN).order_by("pk").values_list("pk", flat=True)[:2])
    for alert_id in acked:
        alert_acknowledge(alert_id=alert_id, actor=operator)
    sign_in(page, "olivia")
    page.goto("/audit")
    page.fill("input[name=action]", "alert.acknowledged")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/audit?*action=alert.acknowledged*")
    assert page.locator("table.audit tbody tr").count() == 2
    with page.expect_download() as info:
        page.click("text=Export CSV")
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename.startswith("audit-") and download.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[0] == list(CSV_COLUMNS)
    body = [dict(zip(rows[0], row)) for row in rows[1:]]
    assert sorted(int(r["target_id"]) for r in body) == acked
    assert {(r["action"], r["actor"], r["target_type"], r["tenant"]) for r in body} == {
        ("alert.acknowledged", "olivia", "alerts.alert", "acme")}


def test_governance_edits_a_rule_in_the_admin(page, make_console_user, default_rules):
    ensure_staff_groups()
    make_console_user("governance", "gina")
    rule = LogRule.objects.get(key="plugin-error-burst")
    version, count = rule.version, rule.threshold_count
    sign_in(page, "gina")
    assert "governance" in page.inner_text("[data-testid=whoami]")
    change = f"/admin/rules/logrule/{rule.pk}/change/"

    page.goto(change)
    page.fill("#id_threshold_count", str(count + 10))
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    rule.refresh_from_db()
    assert (rule.threshold_count, rule.version) == (count + 10, version + 1)
    assert rule.updated_by == "gina"

    page.goto(change)
    page.fill("#id_levels", "ERROR, EROR")
    page.fill("#id_patterns", "(a)\\1")  # a backreference: not linear-time, RE2 refuses it
    page.click("input[name=_save]")
    page.wait_for_selector(".errornote")
    assert "unknown level 'EROR'" in page.inner_text(".form-row.field-levels .errorlist")
    assert "cannot be compiled" in page.inner_text(".form-row.field-patterns .errorlist")
    assert page.input_value("#id_levels") == "ERROR, EROR"  # what she typed is kept to fix
    shoot(page, "admin-rule-invalid")
    rule.refresh_from_db()
    assert (rule.threshold_count, rule.version) == (count + 10, version + 1)


def test_plugin_filter_looks_plugins_up_as_one_types(page, operator, tenant):
    # A page lists FILTER_OPTIONS_LIMIT plugins; typing asks the server for the matching ones.
    Plugin.objects.bulk_create([Plugin(tenant=tenant, slug=f"svc-{i:04d}") for i in range(300)])
    sign_in(page, "olivia")
    page.goto("/")
    assert page.locator("#plugin-options option").count() == 50
    page.fill("input[name=plugin]", "svc-029")
    page.wait_for_function("() => { const o = document.querySelectorAll('#plugin-options option');"
                           " return o.length === 10 && o[0].value === 'svc-0290'; }")
    page.press("input[name=plugin]", "Enter")
    page.wait_for_url("**/?*plugin=svc-029*")
    assert page.input_value("input[name=plugin]") == "svc-029"
