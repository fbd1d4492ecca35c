"""Log-rate anomaly rules (``kind: log_anomaly``): "dynamic thresholds" per (tenant, plugin).

Counting: the detect engine hands every batch's matches of these rules to ``record`` inside the
batch's transaction, which adds them to per-minute rows (``LogRate`` of a ``LogRateGroup``) by
event time; the batch is marked processed in the same transaction, so each event counts once.
Rows are created (count 0, conflicts ignored) then locked in (group, minute) order and added to,
so concurrent batches queue instead of losing an increment or deadlocking.

Judging (the metric rules' claimed schedule): x = matching events per minute over the last
``window`` of complete minutes; its baseline is the per-minute counts over the ``previous`` hour
before the window or the ``seasonal`` slots (``apps.rules.anomaly.baseline_ranges``), where a
minute without a row counts 0 and minutes before the group was first counted are left out. Then
``anomaly.judge`` (z-score, ``min_samples``, ``floor``, ``direction``) and the metric rules'
transitions (``metric_eval.apply_verdicts``: ``for``/``consecutive``, the open alert follows the
value, resolve when the condition clears). So a plugin that always logs 100 errors a minute has a
mean of 100 and a matching sigma and stays quiet, while one that logs 1 a minute and jumps to 30
is far outside its own baseline. One query per table, per rule: O(groups), never O(events).
"""
from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from django.db.models import F, Q, Sum

from apps.alerts.metric_alerts import update_metric_value
from apps.alerts.services import fire_alert
from apps.core.vocabulary import AlertSource
from apps.rules import anomaly
from apps.rules.metric_eval import GroupVerdict, apply_verdicts
from apps.rules.metric_spec import MetricOverride, MetricRuleSpec
from apps.rules.models import LogRate, LogRateGroup, MetricRuleState
from apps.rules.spec import RuleSpec
from apps.rules.spike import plugin_of
from apps.tenants.models import Tenant

RESOLVER = "log-anomaly-rule"
KEEP_S = (anomaly.SEASON_DAYS + 1) * anomaly.DAY_S  # the seasonal baseline's reach, plus a day


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


# --------------------------------------------------------------------------- counting


def record(groups: Sequence[Any]) -> int:
    """Add the matches of a detect batch's log anomaly groups (``engine._Group``: spec, tenant,
    values = (tenant slug, plugin), per-second ``ts_counts``) to their minutes. Returns rows touched.
    Runs in the batch's transaction."""
    wanted: dict[tuple[str, int, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for g in groups:
        plugin = g.key_dict.get("plugin_id") or ""
        for second, n in g.ts_counts.items():
            wanted[(g.spec.id, g.tenant.pk, plugin[:200])][second // 60 * 60] += n
    if not wanted:
        return 0
    keys = sorted(wanted)
    LogRateGroup.objects.bulk_create(
        [LogRateGroup(rule_key=r, tenant_id=t, plugin=p, first_minute=_utc(min(wanted[(r, t, p)])))
         for r, t, p in keys], ignore_conflicts=True)
    ids = {(r, t, p): pk for pk, r, t, p in LogRateGroup.objects.filter(
        rule_key__in={k[0] for k in keys}, tenant_id__in={k[1] for k in keys}, plugin__in={k[2] for k in keys})
        .values_list("pk", "rule_key", "tenant_id", "plugin") if (r, t, p) in wanted}
    counts = {(ids[k], minute): n for k, minutes in wanted.items() for minute, n in minutes.items()}
    LogRate.objects.bulk_create([LogRate(group_id=g, minute=_utc(m), count=0) for g, m in sorted(counts)],
                                ignore_conflicts=True)
    rows = list(LogRate.objects.select_for_update()
                .filter(group_id__in={g for g, _ in counts}, minute__gte=_utc(min(m for _, m in counts)),
                        minute__lte=_utc(max(m for _, m in counts))).order_by("group_id", "minute"))
    touched = []
    for row in rows:
        n = counts.get((row.group_id, int(row.minute.timestamp())))
        if n:
            row.count += n
            touched.append(row)
    LogRate.objects.bulk_update(touched, ["count"])
    return len(touched)


# --------------------------------------------------------------------------- judging


def metric_view(spec: RuleSpec) -> MetricRuleSpec:
    """``spec`` in the shape the metric transitions read (persistence, overrides, the z settings)."""
    a = spec.anomaly
    return MetricRuleSpec(
        id=spec.id, kind="anomaly", name=spec.name, category=spec.category, metric=f"log_rate:{spec.id}",
        severity=spec.severity, window_s=a.window_s, baseline=a.baseline, z_threshold=a.z_threshold,
        min_samples=a.min_samples, floor=a.floor, direction=a.direction, for_s=a.for_s, consecutive=a.consecutive,
        enabled=spec.enabled, description=spec.description, recommended_action=spec.recommended_action,
        labels=spec.labels,
        overrides=tuple(MetricOverride(o.tenant, o.severity, o.enabled) for o in spec.overrides))


def _known_minutes(ranges: list[tuple[float, float]], first: float) -> int:
    return sum(max(0, int(end - max(start, first)) // 60) for start, end in ranges)


def verdicts(spec: RuleSpec, now: datetime) -> list[GroupVerdict]:
    """Every (tenant, plugin) group's verdict at ``now``, from the per-minute rows only."""
    a = spec.anomaly
    end = math.floor(now.timestamp() / 60) * 60  # complete minutes: the current one is still filling
    start = end - a.window_s
    ranges = anomaly.baseline_ranges(end, a.window_s, a.baseline)
    groups = list(LogRateGroup.objects.filter(rule_key=spec.id).values_list("pk", "tenant_id", "plugin", "first_minute"))
    if not groups:
        return []
    rows = LogRate.objects.filter(group__rule_key=spec.id)
    current = dict(rows.filter(minute__gte=_utc(start), minute__lt=_utc(end)).values("group_id")
                   .annotate(n=Sum("count")).values_list("group_id", "n"))
    span = Q()
    for lo, hi in ranges:
        span |= Q(minute__gte=_utc(lo), minute__lt=_utc(hi))
    base = {gid: (s1 or 0, s2 or 0) for gid, s1, s2 in rows.filter(span).values("group_id").annotate(
        s1=Sum("count"), s2=Sum(F("count") * F("count"))).values_list("group_id", "s1", "s2")}
    out = []
    per_minute = a.window_s / 60
    for gid, tenant_id, plugin, first in groups:
        x = current.get(gid, 0) / per_minute
        s1, s2 = base.get(gid, (0, 0))
        stats = anomaly.Stats(_known_minutes(ranges, first.timestamp()), float(s1), float(s2))
        v = anomaly.judge(x, stats, threshold=a.z_threshold, direction=a.direction, min_samples=a.min_samples,
                          floor=a.floor)
        baseline = {"mean": v.mean, "sigma": v.sigma, "z": v.z, "window": a.baseline} if v.z is not None else {}
        summary = (f"{x:g} matching events/min over the last {a.window_s // 60}m from {plugin}, z {v.z:+.2f} "
                   f"against the {a.baseline} baseline (mean {v.mean:g}/min, sigma {v.sigma:g})"
                   if v.z is not None else f"{x:g} matching events/min from {plugin}: {v.reason}")
        out.append(GroupVerdict(tenant_id, (("plugin_id", plugin),), [], v.anomalous, x, baseline, summary))
    return out


def _fire(view: MetricRuleSpec, tenant: Tenant, state: MetricRuleState, v: GroupVerdict, now: datetime,
          rule_version: int) -> None:
    slug = dict(v.values)["plugin_id"]
    plugin = plugin_of(tenant, slug)
    result = fire_alert(
        tenant=tenant, plugin=plugin, rule_key=view.id, rule_version=rule_version, category=view.category,
        severity=view.severity, title=f"{view.name}: {tenant.slug}/{slug}"[:300], summary=v.summary[:2000],
        recommended_action=view.recommended_action, group_key={"tenant_id": tenant.slug, "plugin_id": slug},
        labels=dict(view.labels), window_seconds=view.window_s, occurrences=1, first_seen=state.pending_since or now,
        last_seen=now, trace_ids=[], samples=[], source_received_at=None, source=AlertSource.LOG_RULE,
        annotations={"kind": "log_anomaly", "summary": v.summary}, value=v.value, threshold=view.z_threshold,
        baseline=v.baseline or None)
    if result.absorbed:
        update_metric_value(alert_id=result.alert.pk, value=v.value, baseline=v.baseline or None)
    state.alert_id = result.alert.pk


def evaluate_rule(spec: RuleSpec, *, now: datetime, rule_version: int = 0, rule_pk: int | None = None) -> dict:
    """Judge every group of log anomaly rule ``spec`` at ``now``; fire, follow and resolve alerts."""
    LogRate.objects.filter(group__rule_key=spec.id, minute__lt=now - timedelta(seconds=KEEP_S)).delete()
    return apply_verdicts(metric_view(spec), verdicts(spec, now), now=now, rule_version=rule_version,
                          rule_pk=rule_pk, fire=_fire, resolver=RESOLVER)
