"""Metric rule evaluation: claim due rules, read their series' rollups, fire and resolve alerts.

Schedule: beat rings ``rules.evaluate_metrics`` every 15 s; ``evaluate_due`` claims each due rule by
a conditional UPDATE of ``LogRule.next_eval_at`` (only the claimer whose UPDATE matched the value it
read evaluates), so two beats or workers never evaluate one rule twice for one slot.

Cost per rule: one query for the rule's series (by name, labels filtered in Python), one for
their rollups in the window (rows = series x window minutes; anomaly baselines and absence are
aggregated per series in SQL), and the state rows of its groups; never per sample.

Transitions per (rule, tenant, group), in one transaction per rule with the state rows locked:
violating -> ``consecutive`` +1 (``pending_since`` set on the first); once ``for``/``consecutive``
is met the alert fires (source ``metric_rule``) or, when already open, follows the value
(``apps.alerts.metric_alerts.update_metric_value``); not violating (or no data in the window) ->
the streak resets and an open alert is resolved by actor ``metric-rule`` with a timeline note
(and the usual resolved notification).
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, FloatField, Max, Q, Sum
from django.db.models.functions import Cast

from apps.alerts.metric_alerts import update_metric_value
from apps.alerts.services import alert_resolve, fire_alert
from apps.core import clock
from apps.core.errors import Conflict, NotFound
from apps.core.vocabulary import AlertSource
from apps.rules import anomaly, metric_math
from apps.rules.effective import with_tenant_override
from apps.rules.metric_math import Row
from apps.rules.metric_spec import MetricRuleSpec
from apps.rules.models import LogRule, MetricRollup, MetricRuleState, MetricSeries, RuleOverride
from apps.rules.selectors import row_override
from apps.rules.spec import RulePackError, RuleSpec, parse_rule
from apps.tenants.models import Tenant

logger = logging.getLogger(__name__)
RESOLVER = "metric-rule"
ABSENCE_LOOKBACK_S = 24 * 3600
MAX_SERIES_IN_ALERT = 10


@dataclass
class GroupVerdict:
    """One group's outcome this evaluation (``value`` None: no data)."""

    tenant_id: int
    values: tuple[tuple[str, str], ...]
    series_ids: list[int]
    violating: bool
    value: float | None
    baseline: dict = field(default_factory=dict)
    summary: str = ""


def _epoch(dt: datetime) -> float:
    return dt.timestamp()


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def group_hash(rule_key: str, tenant_id: int, values: tuple[tuple[str, str], ...]) -> str:
    return hashlib.blake2b(orjson.dumps([rule_key, tenant_id, values]), digest_size=16).hexdigest()


# --------------------------------------------------------------------------- schedule


def claim_due(*, now: datetime, limit: int = 200) -> list[int]:
    """Claim the enabled metric rules due at ``now``; returns the ids this caller won."""
    interval = timedelta(seconds=settings.METRIC_RULES_EVAL_SECONDS)
    due = (LogRule.objects.filter(enabled=True).exclude(kind="log")
           .filter(Q(next_eval_at__lte=now) | Q(next_eval_at__isnull=True))
           .order_by(F("next_eval_at").asc(nulls_first=True), "pk").values_list("pk", "next_eval_at")[:limit])
    won = []
    for pk, seen in due:
        mine = LogRule.objects.filter(pk=pk, enabled=True)
        mine = mine.filter(next_eval_at__isnull=True) if seen is None else mine.filter(next_eval_at=seen)
        if mine.update(next_eval_at=now + interval):
            won.append(pk)
    return won


def evaluate_due(*, limit: int = 200) -> int:
    """Claim and evaluate every due metric rule; returns how many were evaluated."""
    now = clock.now()
    done = 0
    for pk in claim_due(now=now, limit=limit):
        rule = LogRule.objects.filter(pk=pk).first()
        if rule is None:
            continue
        try:
            spec = parse_rule(rule.spec)
        except RulePackError as exc:
            logger.error("stored metric rule %s is invalid and is skipped: %s", rule.key, exc)
            continue
        try:
            if isinstance(spec, RuleSpec):  # a spike or log anomaly rule: counted by the detect engine
                evaluate_log_kind(spec, now=now, rule_version=rule.version, rule_pk=rule.pk)
            else:
                evaluate_rule(spec, now=now, rule_version=rule.version, rule_pk=rule.pk)
            done += 1
        except Exception:  # one broken rule must not stop the others
            logger.exception("metric rule evaluation failed", extra={"rule": rule.key})
    return done


def evaluate_log_kind(spec: RuleSpec, *, now: datetime, rule_version: int = 0, rule_pk: int | None = None) -> dict:
    """Scheduled evaluation of a spike or log anomaly rule (imported late: both import this module)."""
    if spec.spike is not None:
        from apps.rules import spike

        return spike.evaluate_rule(spec, now=now, rule_version=rule_version, rule_pk=rule_pk)
    from apps.rules import log_anomaly

    return log_anomaly.evaluate_rule(spec, now=now, rule_version=rule_version, rule_pk=rule_pk)


# --------------------------------------------------------------------------- reading rollups


def _series(spec: MetricRuleSpec, name: str | None = None) -> dict[int, tuple[int, dict]]:
    """series id -> (tenant id, labels) of the rule's metric, label matchers applied."""
    out = {}
    for sid, tenant_id, labels in MetricSeries.objects.filter(name=name or spec.metric).values_list(
            "id", "tenant_id", "labels"):
        if metric_math.selects(labels, spec.where if name is None else ()):
            out[sid] = (tenant_id, labels)
    return out


def _rows(series_ids: list[int], since: float, until: float) -> dict[int, list[Row]]:
    out: dict[int, list[Row]] = defaultdict(list)
    if not series_ids:
        return out
    for sid, minute, count, total, lo, hi, sq, last, last_ts in (
            MetricRollup.objects.filter(series_id__in=series_ids, minute__gt=_utc(since), minute__lte=_utc(until))
            .values_list("series_id", "minute", "count", "sum", "min", "max", "sumsq", "last", "last_ts")):
        out[sid].append(Row(_epoch(minute), count, total, lo, hi, sq, last, _epoch(last_ts)))
    return out


def _baseline_stats(series_ids: list[int], ranges: list[tuple[float, float]]) -> dict[int, anomaly.Stats]:
    """Per series: Stats of its per-minute means over ``ranges``, summed in SQL (no row per minute)."""
    if not series_ids:
        return {}
    span = Q()
    for start, end in ranges:
        span |= Q(minute__gte=_utc(start), minute__lt=_utc(end))
    mean = Cast(F("sum"), FloatField()) / Cast(F("count"), FloatField())
    rows = (MetricRollup.objects.filter(span, series_id__in=series_ids).values("series_id")
            .annotate(n=Count("id"), s1=Sum(mean), s2=Sum(mean * mean)).values_list("series_id", "n", "s1", "s2"))
    return {sid: anomaly.Stats(n, s1 or 0.0, s2 or 0.0) for sid, n, s1, s2 in rows}


# --------------------------------------------------------------------------- verdicts


def _groups(spec: MetricRuleSpec, series: dict[int, tuple[int, dict]]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = defaultdict(list)
    for sid, (tenant_id, labels) in series.items():
        groups[(tenant_id, metric_math.group_values(labels, spec.group_by))].append(sid)
    return groups


def verdicts(spec: MetricRuleSpec, now: datetime) -> list[GroupVerdict]:
    """Every group's outcome at ``now``, read from rollups only."""
    t = _epoch(now)
    series = _series(spec)
    groups = _groups(spec, series)
    if spec.kind == "absence":
        return _absence(spec, groups, t)
    rows = _rows(list(series), t - spec.window_s - 60, t)
    out = []
    if spec.kind == "threshold":
        divisors = _divisors(spec, t) if spec.divide_by else None
        for (tenant_id, values), sids in groups.items():
            value = metric_math.aggregate(spec.aggregation, [rows.get(s, []) for s in sids], t)
            if value is not None and divisors is not None:
                d = divisors.get((tenant_id, values))
                value = value / d if d else None
            violating = value is not None and metric_math.compare(value, spec.op, spec.value)
            label = f"{spec.aggregation}({spec.metric}{'/' + spec.divide_by if spec.divide_by else ''})"
            out.append(GroupVerdict(tenant_id, values, sids, violating, value, summary=(
                f"{label} over {spec.window_s // 60}m = {value:g} ({spec.op} {spec.value:g})" if value is not None
                else f"{label}: no samples in the last {spec.window_s // 60}m")))
        return out
    stats = _baseline_stats(list(series), anomaly.baseline_ranges(t, spec.window_s, spec.baseline))
    for (tenant_id, values), sids in groups.items():
        value = metric_math.aggregate("avg", [rows.get(s, []) for s in sids], t)
        if value is None:
            out.append(GroupVerdict(tenant_id, values, sids, False, None, summary="no samples in the window"))
            continue
        base = sum((stats.get(s, anomaly.Stats()) for s in sids), anomaly.Stats())
        v = anomaly.judge(value, base, threshold=spec.z_threshold, direction=spec.direction,
                          min_samples=spec.min_samples, floor=spec.floor)
        baseline = ({"mean": v.mean, "sigma": v.sigma, "z": v.z, "window": spec.baseline}
                    if v.z is not None else {})
        out.append(GroupVerdict(tenant_id, values, sids, v.anomalous, value, baseline, summary=(
            f"avg({spec.metric}) over {spec.window_s // 60}m = {value:g}, z {v.z:+.2f} against the {spec.baseline} "
            f"baseline (mean {v.mean:g}, sigma {v.sigma:g})" if v.z is not None else v.reason)))
    return out


def _divisors(spec: MetricRuleSpec, t: float) -> dict[tuple, float]:
    series = _series(spec, spec.divide_by)
    rows = _rows(list(series), t - spec.window_s - 60, t)
    return {key: value for key, sids in _groups(spec, series).items()
            if (value := metric_math.aggregate("last", [rows.get(s, []) for s in sids], t)) is not None}


def _absence(spec: MetricRuleSpec, groups: dict[tuple, list[int]], t: float) -> list[GroupVerdict]:
    ids = [s for sids in groups.values() for s in sids]
    seen = dict(MetricRollup.objects.filter(series_id__in=ids, minute__gt=_utc(t - spec.for_s - ABSENCE_LOOKBACK_S))
                .values("series_id").annotate(at=Max("last_ts")).values_list("series_id", "at")) if ids else {}
    out = []
    for (tenant_id, values), sids in groups.items():
        times = [_epoch(seen[s]) for s in sids if s in seen]
        if not times:
            continue  # silent for longer than the lookback: forgotten, unless its alert is open (kept)
        silent = t - max(times)
        out.append(GroupVerdict(tenant_id, values, sids, silent >= spec.for_s, silent, summary=(
            f"no {spec.metric} sample for {int(silent // 60)}m (limit {spec.for_s // 60}m)")))
    return out


# --------------------------------------------------------------------------- transitions


def evaluate_rule(spec: MetricRuleSpec, *, now: datetime, rule_version: int = 0, rule_pk: int | None = None) -> dict:
    """Evaluate ``spec`` at ``now`` and apply the transitions; returns counts (fired/updated/resolved)."""
    return apply_verdicts(spec, verdicts(spec, now), now=now, rule_version=rule_version, rule_pk=rule_pk)


def apply_verdicts(spec: MetricRuleSpec, results: list[GroupVerdict], *, now: datetime, rule_version: int = 0,
                   rule_pk: int | None = None, fire: Callable | None = None, resolver: str = RESOLVER) -> dict:
    """The transitions of every group of ``spec`` given this evaluation's ``results``.

    ``fire(spec, tenant, state, verdict, now, rule_version)`` raises a group's alert (default: a
    ``metric_rule`` alert); ``resolver`` is the actor that resolves cleared alerts. Log anomaly
    rules (``apps.rules.log_anomaly``) pass their own, for alerts that name the plugin.
    """
    tenants = {t.pk: t for t in Tenant.objects.filter(pk__in={v.tenant_id for v in results} | set(
        MetricRuleState.objects.filter(rule_key=spec.id).values_list("tenant_id", flat=True)))}
    overrides = ({row.tenant_id: row_override(row, row.tenant.slug)
                  for row in RuleOverride.objects.filter(rule_id=rule_pk).select_related("tenant")} if rule_pk else {})
    counts = {"fired": 0, "updated": 0, "resolved": 0, "groups": len(results)}
    with transaction.atomic():
        if rule_pk is not None:
            # One evaluation of a rule at a time: two that overlap (a slow run past its claimed
            # interval) would both insert the row of a group that starts violating, and the second
            # would fail on the unique index. Clean groups have no row, so this is every new streak.
            list(LogRule.objects.select_for_update(no_key=True).filter(pk=rule_pk).values_list("pk"))
        states = {(s.tenant_id, s.group_hash): s for s in MetricRuleState.objects.select_for_update()
                  .filter(rule_key=spec.id).order_by("tenant_id", "group_hash")}
        seen: set[tuple[int, str]] = set()
        for v in results:
            tenant = tenants.get(v.tenant_id)
            if tenant is None:
                continue
            view = (with_tenant_override(spec, overrides[tenant.pk]) if tenant.pk in overrides else spec)
            view = view.for_tenant(tenant.slug)
            if not view.enabled:
                continue
            key = (tenant.pk, group_hash(spec.id, tenant.pk, v.values))
            seen.add(key)
            state = states.get(key)
            if state is None:
                if not v.violating:
                    continue
                state = states[key] = MetricRuleState(rule_key=spec.id, tenant=tenant, group_hash=key[1],
                                                      group_key=dict(v.values), updated_at=now)
            _step(view, tenant, state, v, now, rule_version, counts, fire=fire, resolver=resolver)
        for key, state in states.items():
            if key not in seen and (state.alert_id or state.consecutive):
                # No data any more (series gone or silent): the condition no longer holds.
                gone = GroupVerdict(state.tenant_id, tuple(state.group_key.items()), [], False, None,
                                    summary="no samples in the window")
                if spec.kind != "absence":
                    _step(spec, tenants.get(state.tenant_id), state, gone, now, rule_version, counts, fire=fire,
                          resolver=resolver)
    return counts


def _step(spec: MetricRuleSpec, tenant: Tenant | None, state: MetricRuleState, v: GroupVerdict, now: datetime,
          rule_version: int, counts: dict, *, fire: Callable | None = None, resolver: str = RESOLVER) -> None:
    if v.violating:
        state.consecutive += 1
        state.pending_since = state.pending_since or now
        state.last_value = v.value
        # An absence rule's ``for`` is the silence itself, already measured by the verdict.
        lasting = spec.for_s if spec.kind != "absence" else None
        if metric_math.persisted(consecutive=state.consecutive, pending_since=_epoch(state.pending_since),
                                 now=_epoch(now), for_s=lasting, needed=spec.consecutive):
            baseline = v.baseline or None
            if state.alert_id and update_metric_value(alert_id=state.alert_id, value=v.value, baseline=baseline):
                counts["updated"] += 1
            else:
                (fire or _fire)(spec, tenant, state, v, now, rule_version)
                counts["fired"] += 1
    else:
        if state.alert_id:
            try:
                alert_resolve(alert_id=state.alert_id, actor=resolver, note=f"condition cleared: {v.summary}")
                counts["resolved"] += 1
            except (Conflict, NotFound):
                pass  # resolved by someone already
        # Clean again: a clean group has no row (rows are made by a violation), so the groups that are
        # fine cost an evaluation nothing: no lock, no write every 15 s for each of them.
        if state.pk is not None:
            state.delete()
        return
    state.updated_at = now
    state.save()


def _fire(spec: MetricRuleSpec, tenant: Tenant, state: MetricRuleState, v: GroupVerdict, now: datetime,
          rule_version: int) -> None:
    group = dict(v.values)
    where = ", ".join(f"{k}={val}" for k, val in v.values if val) or tenant.slug
    threshold = spec.value if spec.kind == "threshold" else (
        spec.for_s if spec.kind == "absence" else spec.z_threshold)
    annotations: dict[str, Any] = {"metric": spec.metric, "kind": spec.kind, "summary": v.summary,
                                   "series_ids": v.series_ids[:MAX_SERIES_IN_ALERT]}
    result = fire_alert(
        tenant=tenant, plugin=None, rule_key=spec.id, rule_version=rule_version, category=spec.category,
        severity=spec.severity, title=f"{spec.name}: {where}"[:300], summary=v.summary[:2000],
        recommended_action=spec.recommended_action, group_key={"tenant_id": tenant.slug, **group},
        labels={**group, **dict(spec.labels)}, window_seconds=spec.window_s, occurrences=1,
        first_seen=state.pending_since or now, last_seen=now, trace_ids=[], samples=[], source_received_at=None,
        source=AlertSource.METRIC_RULE, annotations=annotations, value=v.value, threshold=threshold,
        baseline=v.baseline or None)
    if result.absorbed:
        update_metric_value(alert_id=result.alert.pk, value=v.value, baseline=v.baseline or None)
    state.alert_id = result.alert.pk
