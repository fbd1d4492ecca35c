"""fire_alerts_bulk: a detection batch's new alerts in a constant number of statements, with the
outcomes of calling fire_alert one by one."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.alerts import services
from apps.alerts.firing import fire_alerts_bulk
from apps.alerts.models import Alert, AlertState, EscalationPolicy, TimelineEntry
from apps.alerts.silences import silence_create
from apps.audit.models import AuditEvent
from apps.core import clock
from apps.delivery.models import Delivery, WebhookEndpoint
from apps.delivery.secrets import seal
from apps.delivery.signing import new_secret
from apps.stream.models import StreamEvent
from apps.tenants.models import FallbackContact, Plugin, Tenant

from .conftest import fire_kwargs


def _endpoint(tenant: Tenant) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(tenant=tenant, url=f"https://hooks.example.com/{tenant.slug}",
                                          secret_encrypted=seal(new_secret()), event_types=["alert.triggered"])


def _setup(slug: str) -> tuple[Tenant, list[Plugin]]:
    """A tenant with a webhook, six plugins, a silence on plugin p1 and an escalation policy on p2."""
    tenant = Tenant.objects.create(slug=slug, name=slug)
    plugins = [Plugin.objects.create(tenant=tenant, slug=f"p{i}", name=f"p{i}") for i in range(6)]
    _endpoint(tenant)
    silence_create(actor=None, tenant_id=tenant.pk, matchers={"plugin": "p1"}, reason="maintenance",
                   ends_at=clock.now() + timedelta(hours=1))
    EscalationPolicy.objects.create(tenant=tenant, plugin=plugins[2], severity="critical",
                                    steps=[{"after_minutes": 17, "channels": ["webhook"]}])
    return tenant, plugins


def _items(tenant: Tenant, plugins: list[Plugin]) -> list[dict]:
    """p0..p4 new (p1 silenced, p2 under its own policy, p3 info, p4 warning with too many trace
    ids), p5 already active (absorbed), p0 again (the same fingerprint twice in one batch)."""
    return [
        fire_kwargs(tenant, plugins[0], occurrences=3),
        fire_kwargs(tenant, plugins[1], occurrences=4),
        fire_kwargs(tenant, plugins[2], occurrences=5, auto_resolve_seconds=600),
        fire_kwargs(tenant, plugins[3], occurrences=6, severity="info"),
        fire_kwargs(tenant, plugins[4], occurrences=7, severity="warning", trace_ids=[f"t{i}" for i in range(30)]),
        fire_kwargs(tenant, plugins[5], occurrences=8),
        fire_kwargs(tenant, plugins[0], occurrences=2),
    ]


def _snapshot(tenant: Tenant) -> list[tuple]:
    """Everything firing leaves behind for a tenant, keyed by plugin, without ids or the tenant."""
    ids = {"silence_id", "endpoints", "delivery_ids", "fingerprint"}  # differ between tenants by nature
    out = []
    for a in Alert.objects.filter(tenant=tenant).select_related("plugin").order_by("plugin__slug"):
        timeline = [(e.kind, e.actor_label, e.message.replace(f"silence {a.silence_id}", "silence <own>"), {k: v for k, v in e.data.items() if k not in ids})
                    for e in a.timeline.order_by("id")]
        audit = [(e.action, e.actor_label, {k: v for k, v in e.data.items() if k not in ids})
                 for e in AuditEvent.objects.filter(target_type="alerts.alert", target_id=str(a.pk)).order_by("id")]
        deliveries = list(Delivery.objects.filter(alert=a).values_list("event_type", "state", "channel"))
        stream = [(type_, data.get("state"), data.get("delivery_state"),
                   data.get("message", "").replace(f"silence {a.silence_id}", "silence <own>")) for type_, data in
                  StreamEvent.objects.filter(alert_id=a.pk).order_by("id").values_list("type", "data")]
        out.append((a.plugin.slug, a.state, a.count, a.severity, a.silence_id is not None, a.suppressed_reason != "",
                    a.next_escalation_at, a.auto_resolve_at, a.trace_ids, a.samples, a.delivery_state, a.title,
                    a.created_at, timeline, audit, deliveries, stream))
    return out


@pytest.mark.django_db
@pytest.mark.both_databases
def test_same_outcomes_as_one_by_one(frozen, events):
    bulk_tenant, bulk_plugins = _setup("bulk")
    one_tenant, one_plugins = _setup("single")
    for tenant, plugins in ((bulk_tenant, bulk_plugins), (one_tenant, one_plugins)):
        services.fire_alert(**fire_kwargs(tenant, plugins[5], occurrences=1))
    frozen.advance(seconds=10)

    results = fire_alerts_bulk(_items(bulk_tenant, bulk_plugins))
    expected = [services.fire_alert(**item) for item in _items(one_tenant, one_plugins)]

    flags = [(r.created, r.absorbed, r.reopened) for r in results]
    assert flags == [(e.created, e.absorbed, e.reopened) for e in expected]
    assert flags == [(True, False, False)] * 5 + [(False, True, False)] * 2
    bulk, one = _snapshot(bulk_tenant), _snapshot(one_tenant)
    for b, o in zip(bulk, one):
        assert b == o

    by_plugin = {a.plugin.slug: a for a in Alert.objects.filter(tenant=bulk_tenant).select_related("plugin")}
    assert results[0].alert.pk == results[6].alert.pk == by_plugin["p0"].pk
    # A new alert's first delivery state is part of its creation: no "Delivery pending" line, audit
    # row or stream event of its own.
    p0 = by_plugin["p0"]
    assert [(e.kind, e.data.get("delivery_state")) for e in p0.timeline.order_by("id")] == [
        ("created", "PENDING"), ("occurrence", None)]
    assert [(e.action, e.data.get("delivery_state")) for e in AuditEvent.objects.filter(
        target_type="alerts.alert", target_id=str(p0.pk)).order_by("id")] == [("alert.created", "PENDING")]
    assert [(type_, data["delivery_state"]) for type_, data in StreamEvent.objects.filter(alert_id=p0.pk)
            .order_by("id").values_list("type", "data")] == [("alert.created", "PENDING"), ("alert.updated", "PENDING")]
    # ... and what its webhook says of it (the README's example body), though its row was stored before.
    [body] = Delivery.objects.filter(alert=p0).values_list("body", flat=True)
    assert json.loads(bytes(body))["data"]["delivery_state"] == "PENDING"
    assert by_plugin["p0"].count == 5  # created with 3, then the repeated fingerprint absorbed 2
    silenced = by_plugin["p1"]
    assert (silenced.state, silenced.next_escalation_at, silenced.delivery_state) == (AlertState.SUPPRESSED, None, "NONE")
    assert not Delivery.objects.filter(alert=silenced).exists()
    assert by_plugin["p2"].next_escalation_at == frozen() + timedelta(minutes=17)  # the plugin's own policy
    assert by_plugin["p0"].next_escalation_at == frozen() + timedelta(minutes=5)  # critical default
    assert by_plugin["p3"].next_escalation_at is None  # info never escalates
    assert by_plugin["p4"].next_escalation_at == frozen() + timedelta(minutes=30)
    assert len(by_plugin["p4"].trace_ids) == 20
    sent = {alert_id for alert_id, kind, _ in events if kind == "alert.triggered"}
    assert {a.pk for a in by_plugin.values()} & sent == {by_plugin[p].pk for p in ("p0", "p2", "p3", "p4", "p5")}


@pytest.mark.django_db
@pytest.mark.both_databases
def test_statements_do_not_grow_with_the_number_of_new_alerts(tenant, frozen):
    _endpoint(tenant)
    silence_create(actor=None, tenant_id=tenant.pk, matchers={"plugin": "quiet"}, reason="x",
                   ends_at=frozen() + timedelta(hours=1))
    plugins = [Plugin.objects.create(tenant=tenant, slug=f"p{i:02d}", name=f"p{i:02d}") for i in range(33)]
    # Both batches at least COPY_MIN_ROWS, so both take the same (COPY) path on PostgreSQL.
    with CaptureQueriesContext(connection) as few:
        assert all(r.created for r in fire_alerts_bulk([fire_kwargs(tenant, p) for p in plugins[:5]]))
    with CaptureQueriesContext(connection) as many:
        results = fire_alerts_bulk([fire_kwargs(tenant, p) for p in plugins[5:]])
    assert len(results) == 28 and all(r.created for r in results)
    assert len(many) == len(few), [q["sql"][:80] for q in many.captured_queries]
    # 7 to create (fingerprints, silences, policies, alerts, timeline, stream, audit) + the outbox's own
    assert len(few) <= 20, "\n".join(q["sql"][:90] for q in few.captured_queries)
    assert Alert.objects.count() == 33 and Delivery.objects.count() == 33
    assert TimelineEntry.objects.filter(kind="created").count() == 33
    assert AuditEvent.objects.filter(action="alert.created").count() == 33


@pytest.mark.django_db
@pytest.mark.both_databases
def test_new_alerts_are_stored_with_the_delivery_state_their_deliveries_give_them(frozen):
    reached = Tenant.objects.create(slug="reached", name="reached")
    _endpoint(reached)
    failing = Tenant.objects.create(slug="failing", name="failing")
    WebhookEndpoint.objects.filter(pk=_endpoint(failing).pk).update(failure_streak=3, downgraded_at=frozen())
    FallbackContact.objects.create(tenant=failing, kind="email", value="ops@example.com")
    items = [fire_kwargs(t, Plugin.objects.create(tenant=t, slug=f"p{i}", name=f"p{i}"))
             for t in (reached, failing) for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        results = fire_alerts_bulk(items)
    assert all(r.created for r in results)
    stored = dict(Alert.objects.values_list("tenant__slug", "delivery_state").distinct())
    assert stored == {"reached": "PENDING", "failing": "DOWNGRADED"}
    for r in results:
        assert Delivery.objects.filter(alert=r.alert, channel="webhook").count() == 1
    assert Delivery.objects.filter(alert__tenant=failing, channel="email").count() == 3  # fallback at once
    if connection.vendor == "postgresql":
        # Written once, after their deliveries: no UPDATE of the new alerts to set that first state.
        assert not [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "alerts_alert"')]


def _in_thread(target) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def body():
        try:
            box["result"] = target()
        except Exception as exc:  # reported to the test, which asserts on it
            box["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, box


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_creating_the_same_fingerprints_end_with_one_alert_each(tenant):
    _endpoint(tenant)
    plugins = [Plugin.objects.create(tenant=tenant, slug=f"p{i}", name=f"p{i}") for i in range(8)]
    shared, first_only, second_only = plugins[:4], plugins[4:6], plugins[6:]
    inserted = threading.Event()

    def first():
        with transaction.atomic():
            result = fire_alerts_bulk([fire_kwargs(tenant, p, occurrences=10) for p in shared + first_only])
            inserted.set()
            time.sleep(0.5)  # the second batch's INSERT now waits on our uncommitted unique keys
            return result

    def second():
        inserted.wait(5)
        with transaction.atomic():
            return fire_alerts_bulk([fire_kwargs(tenant, p, occurrences=1, trace_ids=["t9"])
                                     for p in second_only + shared])

    t1, r1 = _in_thread(first)
    t2, r2 = _in_thread(second)
    t1.join(20), t2.join(20)
    assert "error" not in r1 and "error" not in r2, (r1, r2)
    assert all(r.created for r in r1["result"])
    assert [(r.created, r.absorbed) for r in r2["result"]] == [(True, False)] * 2 + [(False, True)] * 4
    assert Alert.objects.count() == 8
    for p in shared:
        alert = Alert.objects.get(plugin=p)
        assert (alert.count, alert.trace_ids) == (11, ["t1", "t2", "t9"])
        assert alert.timeline.filter(kind="created").count() == 1
        assert Delivery.objects.filter(alert=alert).count() == 1  # absorbing notifies nobody
    assert AuditEvent.objects.filter(action="alert.created").count() == 8


@pytest.mark.django_db
@pytest.mark.both_databases
def test_the_reopen_window_decides_between_reopening_and_opening_anew(tenant, frozen, settings):
    # Three fingerprints: one resolved inside the window (reopens), one resolved before it (a new
    # alert) and one active (absorbs), all in one batch.
    settings.ALERT_REOPEN_WINDOW_SECONDS = 600
    old, recent, active = (Plugin.objects.create(tenant=tenant, slug=s, name=s) for s in ("old", "recent", "active"))
    first = {p.slug: services.fire_alert(**fire_kwargs(tenant, p)).alert for p in (old, recent, active)}
    services.alert_resolve(alert_id=first["old"].pk, actor=None)
    frozen.advance(seconds=601)
    services.alert_resolve(alert_id=first["recent"].pk, actor=None)
    frozen.advance(seconds=599)

    results = fire_alerts_bulk([fire_kwargs(tenant, p) for p in (old, recent, active)])

    assert [(r.created, r.reopened, r.absorbed) for r in results] == [
        (True, False, False), (False, True, False), (False, False, True)]
    assert results[0].alert.pk != first["old"].pk
    assert (results[1].alert.pk, results[2].alert.pk) == (first["recent"].pk, first["active"].pk)
    assert Alert.objects.filter(tenant=tenant, state=AlertState.OPEN).count() == 3
