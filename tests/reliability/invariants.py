"""The end-of-scenario invariants: nothing accepted is lost, nothing is done twice.

``collect(expect, peers)`` reads PostgreSQL and what the local peers received and returns a
``Report``: the figures of the chaos table plus a list of violations (empty when every invariant
holds). ``check`` asserts there are none. Everything is scoped to one tenant and one rule, so the
chaos bench can run several scenarios in one database.

Invariants (issue 8):
  1. every batch the API accepted (202) is stored once and processed (DONE), none PENDING/FAILED;
  2. every accepted matching event is counted exactly once in its window
     (``WindowState`` bucket totals == matching events accepted, per group);
  3. every group over the threshold fired exactly one alert (one alert per fingerprint, none active
     twice), whose count equals the window total; no alert for a group under the threshold;
  4. every alert has one notification delivery per subscribed endpoint and each is DELIVERED, or was
     downgraded and its fallback email and SMS were DELIVERED and reached the SMTP sink / SMS API;
  5. any repeated webhook request carries the same ``webhook-id`` (one id per delivery), and every
     id the receiver saw belongs to a delivery row; each attempt row is counted once;
  6. audit and timeline rows exist for every transition (created, delivery state, escalation).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from apps.alerts.models import ACTIVE_STATES, Alert, TimelineEntry
from apps.audit.models import AuditEvent
from apps.delivery import state as delivery_state
from apps.delivery.models import Channel, Delivery, DeliveryAttempt, DeliveryState
from apps.ingest.models import BatchStatus, IngestBatch
from apps.rules.models import WindowState


@dataclass
class Expectation:
    """What the scenario sent and what therefore must have happened."""

    tenant_id: int
    rule_key: str
    threshold: int
    counted: dict[str, int]  # plugin slug -> matching events accepted (202) for it
    accepted: int  # all events the API accepted (202) for the tenant
    sent: int = 0  # events the client tried to send (including refused requests)
    accepted_batches: set[int] = field(default_factory=set)  # batch ids answered with 202
    endpoint_ids: list[int] | None = None  # endpoints every alert must be delivered to (None: skip)
    escalations: int = 0  # escalation level every alert must have reached exactly
    allow_duplicates: bool = True  # a kill mid-send may repeat a request (same webhook-id)


@dataclass
class Report:
    scenario: str = ""
    sent: int = 0
    accepted: int = 0
    counted: int = 0
    alerts_expected: int = 0
    alerts_fired: int = 0
    deliveries_expected: int = 0
    delivered: int = 0
    downgraded: int = 0
    duplicates: int = 0
    lost: int = 0
    recover_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "violations"}


def _bucket_total(state: dict | None) -> int:
    return sum(int(c) for c in ((state or {}).get("buckets") or {}).values())


def settled(tenant_id: int) -> bool:
    """True when no batch of the tenant waits and no delivery of it is still in flight."""
    if IngestBatch.objects.filter(tenant_id=tenant_id, status=BatchStatus.PENDING).exists():
        return False
    return not Delivery.objects.filter(
        tenant_id=tenant_id, state__in=[DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DOWNGRADED]
    ).exists()


def collect(expect: Expectation, *, hook=None, smtp=None, sms=None, scenario: str = "") -> Report:
    r = Report(scenario=scenario, sent=expect.sent or expect.accepted, accepted=expect.accepted)
    bad = r.violations

    # 1. batches
    batches = IngestBatch.objects.filter(tenant_id=expect.tenant_id)
    stored = dict(batches.values_list("id", "event_count"))
    if expect.accepted_batches and set(stored) != expect.accepted_batches:
        bad.append(f"stored batches {sorted(set(stored) ^ expect.accepted_batches)} differ from the 202 answers")
    if sum(stored.values()) != expect.accepted:
        bad.append(f"batches hold {sum(stored.values())} events, the API accepted {expect.accepted}")
    not_done = list(batches.exclude(status=BatchStatus.DONE).values_list("id", "status"))
    if not_done:
        bad.append(f"batches not processed: {not_done[:10]}")
        r.lost += len(not_done)

    # 2. windows: exactly-once counting
    windows = WindowState.objects.filter(tenant_id=expect.tenant_id, rule_key=expect.rule_key)
    per_plugin: Counter[str] = Counter()
    rows_per_plugin: Counter[str] = Counter()
    for ws in windows:
        plugin = (ws.group_key or {}).get("plugin_id", "")
        per_plugin[plugin] += _bucket_total(ws.state)
        rows_per_plugin[plugin] += 1
    r.counted = sum(per_plugin.values())
    for plugin, n in sorted(expect.counted.items()):
        if per_plugin.get(plugin, 0) != n:
            bad.append(f"window of {plugin}: counted {per_plugin.get(plugin, 0)}, accepted {n}")
            r.lost += max(0, n - per_plugin.get(plugin, 0))
    extra = set(per_plugin) - set(expect.counted)
    if extra:
        bad.append(f"windows for groups never sent: {sorted(extra)}")
    if any(n > 1 for n in rows_per_plugin.values()):
        bad.append(f"more than one window row per group: {dict(rows_per_plugin)}")

    # 3. alerts: fired once
    alerts = list(Alert.objects.filter(tenant_id=expect.tenant_id, rule_key=expect.rule_key))
    by_plugin: defaultdict[str, list[Alert]] = defaultdict(list)
    for a in alerts:
        by_plugin[(a.group_key or {}).get("plugin_id", "")].append(a)
    should = {p for p, n in expect.counted.items() if n >= expect.threshold}
    r.alerts_expected, r.alerts_fired = len(should), len(alerts)
    for p in sorted(should):
        got = by_plugin.get(p, [])
        if not got:
            bad.append(f"no alert for {p} ({expect.counted[p]} events, threshold {expect.threshold})")
            r.lost += 1
        elif len(got) > 1:
            bad.append(f"{len(got)} alerts for {p}: {[a.pk for a in got]}")
        elif got[0].count != expect.counted[p]:
            bad.append(f"alert {got[0].pk} of {p} counts {got[0].count}, accepted {expect.counted[p]}")
    for p in set(by_plugin) - should:
        bad.append(f"alert for {p} under the threshold: {[a.pk for a in by_plugin[p]]}")
    active = Counter(a.fingerprint for a in alerts if a.state in ACTIVE_STATES)
    if any(n > 1 for n in active.values()):
        bad.append(f"fingerprints with several active alerts: {[f for f, n in active.items() if n > 1]}")

    # 4. deliveries
    received_ok = Counter()  # webhook-id -> 2xx answers the receiver gave
    if hook is not None:
        for req in hook.requests:
            if 200 <= req.get("status", 0) < 300:
                received_ok[req["headers"].get("webhook-id")] += 1
    emails = [bytes(e.content if isinstance(e.content, bytes) else e.content.encode()) for e in smtp.envelopes] \
        if smtp is not None else []
    notify = ("alert.triggered", "alert.escalated")
    alert_ids = [a.pk for a in alerts]
    webhook_rows = list(Delivery.objects.filter(alert_id__in=alert_ids, channel=Channel.WEBHOOK,
                                                event_type__in=notify))
    if expect.endpoint_ids is not None:
        have = Counter((d.alert_id, d.endpoint_id, d.event_type) for d in webhook_rows)
        r.deliveries_expected = len(alert_ids) * len(expect.endpoint_ids) * (1 + (1 if expect.escalations else 0))
        for a in alert_ids:
            for ep in expect.endpoint_ids:
                for et in notify[: 1 + (1 if expect.escalations else 0)]:
                    n = have.get((a, ep, et), 0)
                    if n != 1:
                        bad.append(f"alert {a} has {n} {et} deliveries to endpoint {ep}")
                        r.lost += n == 0
    else:
        r.deliveries_expected = len(webhook_rows)
    fallbacks = defaultdict(list)
    for f in Delivery.objects.filter(source_id__in=[d.pk for d in webhook_rows]):
        fallbacks[f.source_id].append(f)
    for d in webhook_rows:
        if d.state == DeliveryState.DELIVERED:
            r.delivered += 1
            if hook is not None and received_ok.get(d.msg_id, 0) < 1:
                bad.append(f"delivery {d.pk} DELIVERED but the receiver never answered 2xx to {d.msg_id}")
        if d.downgraded_at is not None:
            r.downgraded += 1
            kinds = {f.channel: f for f in fallbacks.get(d.pk, [])}
            for ch in (Channel.EMAIL, Channel.SMS):
                f = kinds.get(ch)
                if f is None or f.state != DeliveryState.DELIVERED:
                    bad.append(f"delivery {d.pk} downgraded but its {ch} fallback is "
                               f"{'missing' if f is None else f.state}")
                    r.lost += 1
            if smtp is not None and kinds.get(Channel.EMAIL) is not None and \
                    not any(f"X-PowerX-Alert-ID: {d.alert_id}".encode() in e for e in emails):
                bad.append(f"no email for alert {d.alert_id} reached the SMTP sink")
        elif d.state != DeliveryState.DELIVERED:
            bad.append(f"delivery {d.pk} ({d.event_type}) is {d.state}, neither delivered nor downgraded")
            r.lost += 1
    if sms is not None:
        sent_sms = Delivery.objects.filter(tenant_id=expect.tenant_id, channel=Channel.SMS,
                                           state=DeliveryState.DELIVERED).count()
        if len(sms.messages) < sent_sms:
            bad.append(f"{sent_sms} SMS deliveries DELIVERED, the SMS API received {len(sms.messages)}")

    # 5. webhook-ids: one per delivery, repeats carry the same one, attempts counted once
    if hook is not None:
        msg_ids = set(Delivery.objects.filter(tenant_id=expect.tenant_id, channel=Channel.WEBHOOK)
                      .values_list("msg_id", flat=True))
        ids_per_message: defaultdict[tuple, set] = defaultdict(set)
        for req in hook.requests:
            wid = req["headers"].get("webhook-id")
            if wid not in msg_ids:
                bad.append(f"the receiver got webhook-id {wid!r} that no delivery row has")
                continue
            ids_per_message[(req["path"], req["headers"].get("x-powerx-alert-id"), req["body"])].add(wid)
        for key, ids in ids_per_message.items():
            if len(ids) > 1:
                bad.append(f"one message sent under several webhook-ids: {sorted(ids)}")
        r.duplicates = sum(n - 1 for n in received_ok.values() if n > 1)
        if r.duplicates and not expect.allow_duplicates:
            bad.append(f"{r.duplicates} duplicate successful webhook requests")
    for d in Delivery.objects.filter(tenant_id=expect.tenant_id):
        n = DeliveryAttempt.objects.filter(delivery=d).count()
        if n != d.attempts:
            bad.append(f"delivery {d.pk}: attempts={d.attempts} but {n} attempt rows")

    # 6. audit + timeline
    audits = list(AuditEvent.objects.filter(tenant_id=expect.tenant_id, target_type="alerts.alert")
                  .values_list("action", "target_id", "data"))
    created = Counter(t for a, t, _ in audits if a == "alert.created")
    escalated = Counter(t for a, t, _ in audits if a == "alert.escalated")
    states = defaultdict(Counter)
    for a, t, data in audits:
        if a == "alert.delivery_state":
            states[t][(data or {}).get("delivery_state")] += 1
    born = {t: (data or {}).get("delivery_state") for a, t, data in audits if a == "alert.created"}
    for a in alerts:
        key = str(a.pk)
        if created.get(key) != 1:
            bad.append(f"alert {a.pk}: {created.get(key, 0)} alert.created audit rows")
        timeline = Counter(TimelineEntry.objects.filter(alert=a).values_list("kind", flat=True))
        if timeline.get(TimelineEntry.Kind.CREATED) != 1:
            bad.append(f"alert {a.pk}: {timeline.get(TimelineEntry.Kind.CREATED, 0)} 'created' timeline lines")
        tl_states = Counter(TimelineEntry.objects.filter(alert=a, kind=TimelineEntry.Kind.DELIVERY)
                            .values_list("data__delivery_state", flat=True))
        if tl_states != states.get(key, Counter()):
            bad.append(f"alert {a.pk}: delivery timeline {dict(tl_states)} != audit {dict(states.get(key, {}))}")
        computed = delivery_state.alert_delivery_state(a.pk)
        if computed is not None and str(computed) != a.delivery_state:
            bad.append(f"alert {a.pk}: delivery_state {a.delivery_state}, its deliveries say {computed}")
        # The state a new alert's first deliveries gave it is told by its creation's audit row.
        if computed is not None and states.get(key, Counter()).get(str(computed), 0) < 1 \
                and born.get(key) != str(computed):
            bad.append(f"alert {a.pk}: no audit row for its delivery state {computed}")
        if expect.escalations:
            if a.escalation_level != expect.escalations:
                bad.append(f"alert {a.pk}: escalation level {a.escalation_level}, expected {expect.escalations}")
            if escalated.get(key, 0) != a.escalation_level or \
                    timeline.get(TimelineEntry.Kind.ESCALATED, 0) != a.escalation_level:
                bad.append(f"alert {a.pk}: level {a.escalation_level} but {escalated.get(key, 0)} escalation "
                           f"audit rows and {timeline.get(TimelineEntry.Kind.ESCALATED, 0)} timeline lines")
    return r


def check(expect: Expectation, **kw) -> Report:
    report = collect(expect, **kw)
    assert not report.violations, "invariants violated:\n  " + "\n  ".join(report.violations[:40])
    assert report.lost == 0
    return report
