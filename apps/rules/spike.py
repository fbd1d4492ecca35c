"""Spike rules (``kind: spike``): matching events in the current ``timeframe`` against the one before.

Counting is the log engine's: a spike rule's window row (``WindowState``) spans 2 x timeframe, is
updated once per detect batch under its row lock and in the batch's transaction, so every event
counts exactly once. At time ``now`` the current count ``cur`` is the window's buckets in
``(now - timeframe, now]`` and the reference ``ref`` those in ``(now - 2 timeframe, now - timeframe]``
(``windows`` edge rule; a bucket belongs to exactly one of the two).

The condition is ElastAlert's ``SpikeRule.find_matches``: no spike while ``cur < threshold_cur``
or ``ref < threshold_ref``; up when ``cur >= ref x spike_height``, down when ``cur <= ref /
spike_height``; ``spike_type`` says which count. One deviation: ``ref == cur == 0`` is never a
spike (ElastAlert forgets such keys before it could judge them). Like ElastAlert, a group is judged
only once it has been seen for two timeframes (``since`` in its window state, reset when its
window ran empty) unless ``alert_on_new_data: true``.

Where it is judged: on every detect batch for the batch's groups (``on_batch``: a rise is seen at
once) and on the metric rules' claimed schedule for every recently active group (``evaluate_rule``:
a drop has no events to trigger it). An alert fires when the condition holds, no alert of this
spike is open and the cooldown is over (source ``log_rule``, ``value`` = cur, ``threshold`` =
spike_height, ``baseline`` = {reference, current, ratio, ...}); while it is open, matching events
are absorbed into it. It resolves (actor ``spike-rule``) at the first scheduled evaluation at which
the condition no longer holds; an alert resolved by hand is not raised again before that.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

from django.db import transaction
from django.db.models import Q

from apps.alerts.services import Absorb, alert_resolve, alerts_absorb_bulk, fire_alert
from apps.core.errors import Conflict, NotFound
from apps.core.vocabulary import format_duration
from apps.rules import windows
from apps.rules.effective import with_tenant_override
from apps.rules.log_kind_spec import Spike
from apps.rules.models import RuleOverride, WindowState
from apps.rules.selectors import row_override
from apps.rules.spec import RuleSpec
from apps.tenants.models import Plugin, Tenant

logger = logging.getLogger(__name__)
RESOLVER = "spike-rule"


@dataclass(frozen=True, slots=True)
class Reading:
    ref: int
    cur: int

    @property
    def ratio(self) -> float | None:
        return self.cur / self.ref if self.ref else None


def reading(state: dict | None, now: float, timeframe_s: int) -> Reading:
    """(reference, current) counts of a 2 x timeframe window state at ``now``."""
    both = windows.count_in_window(state, now, 2 * timeframe_s)
    cur = windows.count_in_window(state, now, timeframe_s)
    return Reading(ref=both - cur, cur=cur)


def is_spike(r: Reading, s: Spike) -> bool:
    """ElastAlert's find_matches (see the module docstring), except that 0 vs 0 is no spike."""
    if r.cur < s.threshold_cur or r.ref < s.threshold_ref or (r.cur == 0 and r.ref == 0):
        return False
    up = r.cur >= r.ref * s.height
    down = r.cur <= r.ref / s.height
    return (up and s.type in ("up", "both")) or (down and s.type in ("down", "both"))


def established(state: dict | None, now: float, s: Spike) -> bool:
    """Has the group been seen for two timeframes (or may it alert on new data)?"""
    if s.alert_on_new_data:
        return True
    since = (state or {}).get("since")
    return since is not None and now - float(since) >= 2 * s.timeframe_s


def carry_since(old: dict | None, new: dict, now: float, s: Spike, first_ts: float) -> dict:
    """``new`` (a window state after ``windows.add``) with ``since``: kept from ``old`` while the
    group's window held events, else restarted at this batch's first event."""
    since = (old or {}).get("since")
    if since is None or windows.count_in_window(old, now, 2 * s.timeframe_s) == 0:
        since = min(first_ts, now)
    return {**new, "since": since}


def condition(state: dict | None, now: float, s: Spike) -> tuple[bool, Reading]:
    r = reading(state, now, s.timeframe_s)
    return established(state, now, s) and is_spike(r, s), r


def describe(r: Reading, s: Spike, spec: RuleSpec) -> str:
    what = "/".join(spec.match.levels) if spec.match.levels else "matching"
    tf = format_duration(s.timeframe_s)
    ratio = f"x{r.ratio:.2f}" if r.ratio is not None else "from none"
    return (f"{r.cur} {what} events in the last {tf} vs {r.ref} in the {tf} before ({ratio}; "
            f"spike_height {s.height:g}, spike_type {s.type})")


def _cooled(last_fired: datetime | None, cooldown_s: int, now: datetime) -> bool:
    return last_fired is None or (now - last_fired).total_seconds() >= cooldown_s


def _fire(spec: RuleSpec, *, tenant: Tenant, plugin: Plugin | None, group_key: dict, r: Reading, now: datetime,
          rule_version: int, trace_ids: Sequence[str] = (), samples: Sequence[str] = (),
          last_seen: datetime | None = None, received_at: datetime | None = None):
    s = spec.spike
    where = "/".join(v for v in group_key.values() if v) or tenant.slug
    direction = "up" if r.cur >= r.ref * s.height and r.cur > r.ref else "down"
    baseline = {"reference": r.ref, "current": r.cur, "ratio": r.ratio, "direction": direction,
                "spike_height": s.height, "spike_type": s.type, "timeframe": s.timeframe_s}
    return fire_alert(
        tenant=tenant, plugin=plugin, rule_key=spec.id, rule_version=rule_version, category=spec.category,
        severity=spec.severity, title=f"{spec.name}: {where}"[:300], summary=describe(r, s, spec),
        recommended_action=spec.recommended_action, group_key=group_key, labels=dict(spec.labels),
        window_seconds=s.timeframe_s, occurrences=max(r.cur, 1), first_seen=now - timedelta(seconds=s.timeframe_s),
        last_seen=last_seen or now, trace_ids=list(trace_ids), samples=list(samples), source_received_at=received_at,
        annotations={"kind": "spike"}, value=float(r.cur), threshold=s.height, baseline=baseline)


# --------------------------------------------------------------------------- detect batches


def on_batch(pending: Sequence[Any], *, rule_versions: dict[str, int], received_at: datetime,
             plugins_of: Callable[[list], dict], result: Any) -> None:
    """The detect engine's hook for spike groups with counted matches (``engine._Pending`` items,
    windows already updated and locked): feed their open alert, or judge the spike at
    ``received_at``. Sets ``ws.alert_id`` / ``ws.last_fired_at``; the engine saves the rows."""
    now_s = received_at.timestamp()
    feeds = [p for p in pending if p.ws.alert_id]
    absorbed = alerts_absorb_bulk([Absorb(
        alert_id=p.ws.alert_id, occurrences=p.counted, first_seen=p.g.first, last_seen=p.g.last,
        trace_ids=p.g.trace_ids, samples=p.g.samples) for p in feeds]) if feeds else {}
    for p in feeds:
        if p.ws.alert_id in absorbed:
            result.alerts_absorbed += 1
            result.alert_ids.append(p.ws.alert_id)
    # A group whose alert was resolved by hand keeps its alert_id until the spike is over
    # (evaluate_rule clears it), so the same spike is not raised twice.
    firing = []
    for p in pending:
        if p.ws.alert_id:
            continue
        holds, r = condition(p.state, now_s, p.g.spec.spike)
        if holds and _cooled(p.ws.last_fired_at, p.g.spec.cooldown_s, received_at):
            firing.append((p, r))
    plugins = plugins_of([p.g for p, _ in firing]) if firing else {}
    for p, r in firing:
        g = p.g
        plugin_key = (g.tenant.pk, g.key_dict.get("plugin_id")) if "plugin_id" in g.spec.group_by else None
        outcome = _fire(g.spec, tenant=g.tenant, plugin=plugins.get(plugin_key), group_key=g.key_dict, r=r,
                        now=received_at, rule_version=rule_versions.get(g.spec.id, 0), trace_ids=g.trace_ids,
                        samples=g.samples, last_seen=g.last, received_at=received_at)
        p.ws.alert_id, p.ws.last_fired_at = outcome.alert.pk, received_at
        result.alert_ids.append(outcome.alert.pk)
        if outcome.created or outcome.reopened:
            result.alerts_fired += 1
            logger.info("spike alert fired", extra={"alert_id": outcome.alert.pk, "tenant_id": g.tenant_slug,
                                                    "rule": g.spec.id, "count": r.cur, "reference": r.ref})
        else:
            result.alerts_absorbed += 1


# --------------------------------------------------------------------------- the schedule


def plugin_of(tenant: Tenant, slug: str | None) -> Plugin | None:
    """The tenant's plugin ``slug``, registered if unknown (as the engine does for a firing group)."""
    if not slug or len(slug) > 63:
        return None
    # ignore_conflicts: ingest (or a detect worker) may register it concurrently.
    Plugin.objects.bulk_create([Plugin(tenant=tenant, slug=slug, name=slug)], ignore_conflicts=True)
    return Plugin.objects.filter(tenant=tenant, slug=slug).first()


def evaluate_rule(spec: RuleSpec, *, now: datetime, rule_version: int = 0, rule_pk: int | None = None) -> dict:
    """Judge every recently active group of spike rule ``spec`` at ``now``: fire a spike the
    batches did not (a drop), resolve the alerts whose spike is over. Returns counts.

    The window rows are locked in the engine's order (rule key, tenant id, group hash), so a
    concurrent detect batch waits for this evaluation or the other way round; neither deadlocks.
    Only rows touched within three timeframes or holding an alert are read: older windows are
    empty, so the cost follows the active groups, not every group ever seen.
    """
    s = spec.spike
    counts = {"groups": 0, "fired": 0, "resolved": 0}
    recent = now - timedelta(seconds=3 * s.timeframe_s)
    overrides = ({row.tenant_id: row_override(row, row.tenant.slug)
                  for row in RuleOverride.objects.filter(rule_id=rule_pk).select_related("tenant")} if rule_pk else {})
    with transaction.atomic():
        rows = list(WindowState.objects.select_for_update()
                    .filter(Q(updated_at__gte=recent) | Q(alert__isnull=False), rule_key=spec.id)
                    .order_by("tenant_id", "group_hash"))
        tenants = {t.pk: t for t in Tenant.objects.filter(pk__in={w.tenant_id for w in rows})}
        now_s = now.timestamp()
        for ws in rows:
            tenant = tenants.get(ws.tenant_id)
            if tenant is None:
                continue
            view = (with_tenant_override(spec, overrides[tenant.pk]) if tenant.pk in overrides else spec)
            view = view.for_tenant(tenant.slug)
            counts["groups"] += 1
            holds, r = condition(ws.state, now_s, s)
            if ws.alert_id and not holds:
                try:
                    alert_resolve(alert_id=ws.alert_id, actor=RESOLVER, note=f"spike over: {describe(r, s, spec)}")
                    counts["resolved"] += 1
                except (Conflict, NotFound):
                    pass  # resolved by someone already
                ws.alert_id = None
                ws.save(update_fields=["alert"])
            elif not ws.alert_id and holds and view.enabled and _cooled(ws.last_fired_at, view.cooldown_s, now):
                plugin = plugin_of(tenant, ws.group_key.get("plugin_id"))
                outcome = _fire(view, tenant=tenant, plugin=plugin, group_key=dict(ws.group_key), r=r, now=now,
                                rule_version=rule_version)
                ws.alert_id, ws.last_fired_at = outcome.alert.pk, now
                ws.save(update_fields=["alert", "last_fired_at"])
                counts["fired"] += 1
    return counts
