"""Bulk actions in a real browser (Debian's Chromium via Playwright): three alerts ticked and
resolved with the keyboard alone, and the same forms working with JavaScript switched off."""
from __future__ import annotations

import pytest

from apps.alerts.models import Alert, AlertState, TimelineEntry

from .test_browser import ARGS, CHROMIUM, browser, operator, page, shoot, sign_in  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_tick_three_alerts_with_the_keyboard_and_resolve_them(page, operator, make_alert):  # noqa: F811
    alerts = [make_alert(title=f"Disk full on node {n}") for n in range(4)]
    sign_in(page, "olivia")
    page.goto("/")
    shown = page.locator("#alert-rows tr.row").evaluate_all("rows => rows.map(r => Number(r.dataset.id))")
    assert sorted(shown) == sorted(a.pk for a in alerts)
    for _ in range(3):  # j: next row, x: tick it
        page.keyboard.press("j")
        page.keyboard.press("x")
    assert page.locator("#alert-rows input[name=ids]:checked").count() == 3
    assert page.text_content("#bulk-resolve [data-selected-count]") == "(3)"  # (inside the closed group)
    page.keyboard.press("r")  # opens the resolve group with its note focused
    assert page.evaluate("document.activeElement.id") == "bulk-resolve-note"
    page.keyboard.type("disk cleaned up")
    shoot(page, "alert-list-bulk-resolve")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-success")
    ticked = sorted(shown[:3])  # the first three rows; done in id order
    assert page.inner_text(".msg-success") == "Resolved 3 alert(s): " + ", ".join(f"#{pk}" for pk in ticked) + "."
    assert dict(Alert.objects.values_list("pk", "state")) == {
        pk: AlertState.RESOLVED if pk in ticked else AlertState.OPEN for pk in shown}
    assert set(TimelineEntry.objects.filter(kind="resolved").values_list("message", "actor_label")) == {
        ("disk cleaned up", "olivia")}


def test_bulk_forms_work_without_javascript(browser, live_server, operator, make_alert):  # noqa: F811
    opened, done = make_alert(), make_alert(state=AlertState.RESOLVED)
    context = browser.new_context(java_script_enabled=False, base_url=live_server.url)
    page = context.new_page()  # noqa: F811
    page.set_default_timeout(10_000)
    try:
        sign_in(page, "olivia")
        page.goto("/?state=all")
        page.check(f"#alert-rows input[name=ids][value='{opened.pk}']")
        page.check(f"#alert-rows input[name=ids][value='{done.pk}']")
        page.click("#bulk-suppress-group summary")
        page.fill("input[name=duration]", "2h")
        page.fill("input[name=reason]", "maintenance window")
        page.click("#bulk-suppress")
        page.wait_for_selector(".msg-success")
        assert page.inner_text(".msg-success").endswith(f"1 alert(s): #{opened.pk}.")
        assert page.inner_text(".msg-warning") == f"Skipped 1 alert(s): #{done.pk} is resolved."
        assert Alert.objects.get(pk=opened.pk).state == AlertState.SUPPRESSED
    finally:
        context.close()
