"""The detection engine: one call per ingest batch, inside the caller's transaction.

``detect(events, received_at=...)`` matches every event against its tenant's compiled rules,
aggregates the matches per (rule, tenant, group key) in memory, then updates each touched
group's ``WindowState`` once under a row lock, feeds the groups' active alerts in bulk
(``apps.alerts.services.alerts_absorb_bulk``) and fires the groups that cross their threshold
without one (``apps.alerts.firing.fire_alerts_bulk``). Because the caller marks the batch processed
in the same transaction, every event is counted exactly once even when workers crash or race.

Cost per batch: one query for the ruleset version (compiled sets are cached per process and per
version, and shared by tenants whose overrides are identical), no tenant query (the active
tenants are cached for a few seconds, ``apps.tenants.active``), one
``INSERT .. ON CONFLICT DO NOTHING`` plus one ``SELECT .. FOR UPDATE`` over all touched groups,
a handful of statements that feed every group's active alert at once (however many there are),
one bulk UPDATE of the windows, and for the groups that fire anew one ``fire_alerts_bulk`` call
(a constant number of statements for all the new alerts of the batch, however many: an alert
storm costs a few statements per batch, not ten per alert); the plugins of the firing groups
are looked up (and registered) together, in one query. A group
whose alert is no longer active (resolved, even concurrently) absorbs nothing and is judged
like a group without one: it fires only when its window crosses the threshold out of cooldown.

Time ("now"): the window is evaluated at the batch's ``received_at``, the moment ingest
accepted it, not at the worker's clock, so a worker backlog (or a replayed batch) neither drops
events nor shifts cooldowns. (Batches detected together under a backlog, received within a second
of each other, are evaluated at the newest one's: ``apps.ingest.processing.COALESCE_SPREAD``.) An
event whose bucket is at or before ``received_at - window`` is *late*: it stays in ``matched`` (the
caller stores it as evidence) but it is not counted and it does not feed an alert;
``DetectResult.late_dropped`` reports how many. Events slightly in the future (ingest bounds the
skew) count in the current window.

Deadlock policy: groups are inserted and locked in one order, sorted by (rule_key, tenant id,
group_hash), by single statements, so two workers touching the same groups queue instead of
deadlocking. Failure policy: any database error propagates; the caller's transaction rolls back
and the batch is retried whole, so nothing is half-counted.

Alert storms: the groups about to open new alerts pass ``apps.alerts.storm_guard`` first; past
the tenant's per-batch/per-minute budget they are folded into one alert per (tenant, rule).
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import orjson
from django.db import transaction

from apps.alerts import storm_guard
from apps.alerts.firing import fire_alerts_bulk
from apps.alerts.services import Absorb, alerts_absorb_bulk
from apps.core import clock
from apps.core.events import Event
from apps.rules import fastpath, log_anomaly, spike, windows
from apps.core.vocabulary import format_duration
from apps.rules.effective import override_signature, tenant_specs
from apps.rules.matcher import CompiledRuleSet, group_key
from apps.rules.fastpath import LockedWindow, WindowKey
from apps.rules.selectors import Snapshot, load_snapshot, ruleset_stamp
from apps.rules.spec import RuleSpec
from apps.tenants import active
from apps.tenants.models import Plugin, Tenant
from apps.tenants.fastpath import insert_plugins, plugins_of_pairs

logger = logging.getLogger(__name__)

MAX_TRACE_IDS = 20
MAX_SAMPLES = 10
_PLUGIN_SLUG_MAX = 63


@dataclass
class DetectResult:
    """What one ``detect`` call did. ``matched`` and ``alerts_fired`` are the ingest contract."""

    matched: dict[int, list[str]] = field(default_factory=dict)  # event index -> rule keys
    alerts_fired: int = 0  # alerts created or reopened
    alerts_absorbed: int = 0  # calls that fed an already active alert
    alert_ids: list[int] = field(default_factory=list)
    groups: int = 0  # (rule, tenant, group key) windows updated
    late_dropped: int = 0  # matched events too old for their rule's window
    unknown_tenant_events: int = 0  # matches of tenants with no (active) Tenant row: not counted
    ruleset_version: int = 0


# --------------------------------------------------------------------------- compiled rule sets


class _Compiled:
    """Compiled rule sets of one ruleset version, per tenant, shared by equal override signatures."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._by_signature: dict[tuple, CompiledRuleSet] = {}
        self._by_tenant: dict[str, CompiledRuleSet] = {}

    def for_tenant(self, slug: str) -> CompiledRuleSet:
        rs = self._by_tenant.get(slug)
        if rs is None:
            rows = self.snapshot.rows.get(slug, {})
            sig = override_signature(self.snapshot.specs, slug, rows)
            rs = self._by_signature.get(sig)
            if rs is None:
                rs = CompiledRuleSet.build(tenant_specs(self.snapshot.specs, slug, rows))
                self._by_signature[sig] = rs
            self._by_tenant[slug] = rs  # a benign race: two threads may both build; one wins
        return rs


_current: _Compiled | None = None
_lock = threading.Lock()


def compiled_rules(version: tuple[int, str]) -> _Compiled:
    """The process-wide compiled rules for ``version`` (reloaded once when the version moves)."""
    global _current
    cur = _current
    if cur is None or cur.snapshot.version != version:
        with _lock:
            cur = _current
            if cur is None or cur.snapshot.version != version:
                cur = _Compiled(load_snapshot(version))
                _current = cur
    return cur


def reset_cache() -> None:
    """Forget compiled rules (tests; the version check makes this unnecessary in production)."""
    global _current
    _current = None


# --------------------------------------------------------------------------- aggregation


class _Group:
    """Matches of one (rule, tenant, group key) in this batch."""

    __slots__ = ("spec", "tenant_slug", "values", "count", "first", "last", "ts_counts",
                 "trace_ids", "samples", "plugins", "tenant", "hash")

    def __init__(self, spec: RuleSpec, tenant_slug: str, values: tuple[str, ...]) -> None:
        self.spec, self.tenant_slug, self.values = spec, tenant_slug, values
        self.count = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.ts_counts: dict[int, int] = {}
        self.trace_ids: list[str] = []
        self.samples: list[str] = []
        self.plugins: set[str] = set()
        self.tenant: Tenant | None = None
        self.hash = ""

    def add(self, ev: Event) -> None:
        self.count += 1
        ts = ev.ts
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts
        second = int(ts.timestamp())
        self.ts_counts[second] = self.ts_counts.get(second, 0) + 1
        if ev.trace_id and len(self.trace_ids) < MAX_TRACE_IDS and ev.trace_id not in self.trace_ids:
            self.trace_ids.append(ev.trace_id)
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(f"{ev.level} {ev.message}")  # already masked by ingest
        if len(self.plugins) < 2:
            self.plugins.add(ev.plugin_id)

    @property
    def key_dict(self) -> dict[str, str]:
        return dict(zip(self.spec.group_by, self.values))


def group_hash(rule_key: str, tenant_slug: str, values: Sequence[str]) -> str:
    """Digest identifying a window row (rule, tenant and group values)."""
    return hashlib.sha256(orjson.dumps([rule_key, tenant_slug, list(values)])).hexdigest()


def aggregate(events: Sequence[Event], compiled: _Compiled) -> tuple[dict[int, list[str]], dict[tuple, _Group]]:
    """Match every event; return (event index -> rule keys, group id -> aggregated matches)."""
    matched: dict[int, list[str]] = {}
    groups: dict[tuple, _Group] = {}
    slug: str | None = None
    rs: CompiledRuleSet | None = None
    for i, ev in enumerate(events):
        if ev.tenant_id != slug:
            slug = ev.tenant_id
            rs = compiled.for_tenant(slug)
        hits = rs.match(ev)
        if not hits:
            continue
        specs = rs.specs
        keys = []
        for r in hits:
            spec = specs[r]
            keys.append(spec.id)
            gid = (spec.id, slug, group_key(spec.group_by, ev))
            g = groups.get(gid)
            if g is None:
                g = groups[gid] = _Group(spec, slug, gid[2])
            g.add(ev)
        matched[i] = keys
    return matched, groups


# --------------------------------------------------------------------------- detect


def detect(events: list[Event], *, received_at: datetime) -> DetectResult:
    """Match ``events``, update their windows and fire alerts; see the module docstring.

    ``received_at`` (aware) is when ingest accepted the batch; it is the window's "now".
    Must be called inside the caller's transaction. It opens no savepoint of its own (two round
    trips per batch): a failure here must roll back the caller's whole transaction anyway.
    """
    result = DetectResult()
    if not events:
        return result
    version = ruleset_stamp()
    result.ruleset_version = version[0]
    compiled = compiled_rules(version)
    result.matched, groups = aggregate(events, compiled)
    if groups:
        with transaction.atomic(savepoint=False):
            _apply(list(groups.values()), compiled.snapshot, received_at, result)
    return result


def _apply(groups: list[_Group], snapshot: Snapshot, received_at: datetime, result: DetectResult) -> None:
    tenants = active.tenants({g.tenant_slug for g in groups})
    work: list[_Group] = []
    for g in groups:
        tenant = tenants.get(g.tenant_slug)
        if tenant is None:
            result.unknown_tenant_events += g.count
            continue
        g.tenant, g.hash = tenant, group_hash(g.spec.id, g.tenant_slug, g.values)
        work.append(g)
    if any(g.spec.anomaly for g in work):  # log anomaly rules count per minute, not in windows
        log_anomaly.record([g for g in work if g.spec.anomaly])
        work = [g for g in work if not g.spec.anomaly]
    if not work:
        return
    work.sort(key=lambda g: (g.spec.id, g.tenant.pk, g.hash))
    now = clock.now()
    rows = fastpath.lock_windows([WindowKey(g.spec.id, g.tenant.pk, g.hash, g.key_dict) for g in work], now)

    now_s = received_at.timestamp()
    touched: list[LockedWindow] = []
    feeds: list[_Pending] = []  # groups whose window points at an alert: absorb if it is still active
    fires: list[_Pending] = []  # groups that may fire (rare)
    spikes: list[_Pending] = []  # spike rules' groups: judged by apps.rules.spike
    for g in work:
        ws = rows[(g.spec.id, g.tenant.pk, g.hash)]
        window_s = g.spec.threshold.window_s
        state, dropped = windows.add(ws.state or None, g.ts_counts.items(), window_s=window_s, now=now_s)
        if g.spec.spike:
            state = spike.carry_since(ws.state, state, now_s, g.spec.spike, g.first.timestamp())
        ws.state, ws.updated_at = state, now
        touched.append(ws)
        result.groups += 1
        result.late_dropped += dropped
        counted = g.count - dropped
        if counted <= 0:
            continue
        p = _Pending(g, ws, state, counted)
        (spikes if g.spec.spike else feeds if ws.alert_id else fires).append(p)

    if feeds:
        # One statement for all of them; an alert resolved meanwhile (or long ago) absorbs nothing,
        # and its group is judged like any group without an active alert.
        absorbed = alerts_absorb_bulk([Absorb(
            alert_id=p.ws.alert_id, occurrences=p.counted, first_seen=p.g.first, last_seen=p.g.last,
            trace_ids=p.g.trace_ids, samples=p.g.samples, auto_resolve_seconds=p.g.spec.auto_resolve_s)
            for p in feeds])
        for p in feeds:
            if p.ws.alert_id in absorbed:
                result.alerts_absorbed += 1
                result.alert_ids.append(p.ws.alert_id)
            else:
                fires.append(p)
        if len(fires) > 1:
            fires.sort(key=lambda p: (p.g.spec.id, p.g.tenant.pk, p.g.hash))  # the lock order

    firing: list[tuple[_Pending, int]] = []
    for p in fires:
        g, ws = p.g, p.ws
        window_s = g.spec.threshold.window_s
        in_window = windows.count_in_window(p.state, now_s, window_s)
        last_fired = ws.last_fired_at.timestamp() if ws.last_fired_at else None
        if windows.should_fire(in_window, g.spec.threshold.count, last_fired, g.spec.cooldown_s, now_s):
            firing.append((p, in_window))
    verdict = storm_guard.split([storm_guard.Candidate(p.g.tenant.pk, p.g.spec.id, p.g.spec.severity)
                                 for p, _ in firing])
    folded = {key: [firing[i][0] for i in indices] for key, indices in verdict.folded.items()}
    firing = [firing[i] for i in verdict.admitted]
    plugins = _plugins([p.g for p, _ in firing])
    outcomes = fire_alerts_bulk([_fire_args(p.g, snapshot, p.state, in_window, received_at,
                                            plugins.get(_plugin_key(p.g))) for p, in_window in firing])
    for (p, in_window), outcome in zip(firing, outcomes):
        g, ws = p.g, p.ws
        ws.last_fired_at = received_at
        ws.alert_id = outcome.alert.pk
        result.alert_ids.append(outcome.alert.pk)
        if outcome.created or outcome.reopened:
            result.alerts_fired += 1
            logger.info("alert fired", extra={"alert_id": outcome.alert.pk, "tenant_id": g.tenant_slug,
                                              "rule": g.spec.id, "count": in_window})
        else:
            result.alerts_absorbed += 1
    _fold_storm(folded, snapshot, received_at, result)
    if spikes:
        spike.on_batch(spikes, rule_versions=snapshot.rule_versions, received_at=received_at, plugins_of=_plugins,
                       result=result)
    fastpath.save_windows(touched)


def _fold_storm(folded: dict[tuple[int, str], list[_Pending]], snapshot: Snapshot, received_at: datetime,
                result: DetectResult) -> None:
    """Groups the alert-storm guard held back: one fold alert per (tenant, rule). Their windows
    start a cooldown as if they had fired, so a lasting storm folds each group once per cooldown."""
    for _, pending in sorted(folded.items()):
        spec, tenant = pending[0].g.spec, pending[0].g.tenant
        outcome = storm_guard.fold(
            tenant=tenant, rule_key=spec.id, rule_name=spec.name, rule_version=snapshot.rule_versions.get(spec.id, 0),
            category=spec.category, severity=spec.severity, labels=dict(spec.labels),
            recommended_action=spec.recommended_action, window_seconds=spec.threshold.window_s,
            folded_keys=[", ".join(f"{k}={v}" for k, v in zip(spec.group_by, p.g.values) if k != "tenant_id")
                         or p.g.tenant_slug for p in pending],
            trace_ids=[p.g.trace_ids[0] for p in pending if p.g.trace_ids],
            first_seen=min(p.g.first for p in pending), last_seen=max(p.g.last for p in pending),
            source_received_at=received_at, auto_resolve_seconds=spec.auto_resolve_s)
        for p in pending:
            p.ws.last_fired_at, p.ws.alert_id = received_at, None
        result.alert_ids.append(outcome.alert.pk)
        if outcome.created or outcome.reopened:
            result.alerts_fired += 1
        else:
            result.alerts_absorbed += 1
        logger.warning("alert storm: new alerts folded", extra={
            "alert_id": outcome.alert.pk, "tenant_id": tenant.slug, "rule": spec.id, "folded": len(pending)})


@dataclass(slots=True)
class _Pending:
    """A group with counted matches, between the window update and the alert decision."""

    g: _Group
    ws: LockedWindow
    state: dict
    counted: int


def _plugin_key(g: _Group) -> tuple[int, str] | None:
    """(tenant id, slug) of the alert's plugin: the group's plugin_id, or the one plugin all its
    events came from; None when there is none (or the slug cannot be a plugin)."""
    if "plugin_id" in g.spec.group_by:
        slug = g.values[g.spec.group_by.index("plugin_id")]
    elif len(g.plugins) == 1:
        slug = next(iter(g.plugins))
    else:
        return None
    if not slug or len(slug) > _PLUGIN_SLUG_MAX:
        return None
    return (g.tenant.pk, slug)


def _plugins(groups: list[_Group]) -> dict[tuple[int, str], Plugin]:
    """The plugins of the firing groups, registering the unknown ones: one query (three when some
    are new), not a get_or_create (query plus savepoint) per group."""
    keys = {k for g in groups if (k := _plugin_key(g)) is not None}
    if not keys:
        return {}
    found = plugins_of_pairs(keys)
    missing = keys - found.keys()
    if missing:
        # A concurrent worker (or store_events) may register the same plugin: insert_plugins skips it.
        insert_plugins(sorted(missing))
        found.update(plugins_of_pairs(missing))
    return found


def _fire_args(g: _Group, snapshot: Snapshot, state: dict, occurrences: int, received_at: datetime,
               plugin: Plugin | None) -> dict:
    """``fire_alert``'s keyword arguments for a group that fires."""
    spec = g.spec
    window_s = spec.threshold.window_s
    # The alert starts at the oldest event still in the window, which may be from an earlier batch.
    cutoff = received_at.timestamp() - window_s
    starts = [int(b) for b in state.get("buckets", {}) if int(b) > cutoff]
    first_seen = g.first
    if starts:
        first_seen = min(first_seen, datetime.fromtimestamp(min(starts), tz=timezone.utc))
    where = plugin.slug if plugin else g.tenant_slug
    extra = ", ".join(f"{k}={v}" for k, v in zip(spec.group_by, g.values)
                      if k not in ("tenant_id", "plugin_id") and v)
    levels = "/".join(spec.match.levels) if spec.match.levels else "matching"
    summary = f"{occurrences} {levels} events in {format_duration(window_s)} from {where}"
    if extra:
        summary += f" ({extra})"
    return dict(
        tenant=g.tenant, plugin=plugin, rule_key=spec.id, rule_version=snapshot.rule_versions.get(spec.id, 0),
        category=spec.category, severity=spec.severity,
        title=f"{spec.name}: {'/'.join(v for v in g.values if v) or g.tenant_slug}"[:300],
        summary=summary, recommended_action=spec.recommended_action, group_key=g.key_dict,
        labels=dict(spec.labels), window_seconds=window_s, occurrences=occurrences, first_seen=first_seen,
        last_seen=g.last, trace_ids=g.trace_ids, samples=g.samples, source_received_at=received_at,
        auto_resolve_seconds=spec.auto_resolve_s)
