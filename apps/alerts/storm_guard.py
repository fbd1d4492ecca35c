"""Alert-storm guard: bound the new alerts a tenant gets per detect batch and per minute.

Ten thousand plugins crashing at once must not open ten thousand alerts (and send as many
webhooks): per tenant, at most ``ALERTS_NEW_PER_BATCH_MAX`` new alerts per batch and
``ALERTS_NEW_PER_MINUTE_MAX`` per minute are opened; every further one is *folded*: one alert per
(tenant, rule), "N more alerts suppressed", whose count grows as more are folded and whose
samples name the first folded group keys. Alerts already active are not affected (they absorb
as always), so the guard only ever holds back alerts that do not exist yet.

``triage`` is the arithmetic (pure, unit-tested); ``opened_last_minute`` reads the per-minute
budget (``apps.alerts.opened``: a few counter rows per tenant, written as batches commit);
``fold`` writes the fold alert through ``fire_alert``. Concurrency: two detect workers read the
same minute's count, so together they may open up to ``ALERTS_NEW_PER_BATCH_MAX`` more per extra
worker in that minute; the per-batch bound is exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Collection, Mapping, Sequence

from django.conf import settings

from apps.tenants.models import Tenant

from . import opened
from .firing import MAX_SAMPLES, MAX_TRACE_IDS, FireResult, fire_alert
from .models import Alert, Severity

# The fold alert's group key: one fingerprint per (tenant, rule), apart from every real group.
FOLD_GROUP_KEY = {"storm_guard": "folded"}
FOLD_LABEL = ("storm_guard", "folded")
NAMED_IN_SUMMARY = 5
_RANK = {s: i for i, s in enumerate(Severity.values)}  # info < warning < critical < emergency


@dataclass(frozen=True, slots=True)
class Candidate:
    """A group about to open a new alert."""

    tenant_id: int
    rule_key: str
    severity: str


@dataclass(slots=True)
class Triage:
    admitted: list[int] = field(default_factory=list)  # candidate indices that open their alert
    folded: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # (tenant, rule) -> indices


def triage(candidates: Sequence[Candidate], *, opened_last_minute: Mapping[int, int], per_batch: int,
           per_minute: int) -> Triage:
    """Split ``candidates`` into those that may open an alert and those folded per (tenant, rule).

    A tenant's budget is ``min(per_batch, per_minute - opened_last_minute[tenant])``. It goes to
    the most severe candidates first and, within a severity, to each rule's first candidate
    before any rule's second (one storming rule cannot starve the others), then in the given
    order. Indices come back in ascending order.
    """
    ordinal: dict[tuple[int, str], int] = {}
    keyed = []
    for i, c in enumerate(candidates):
        n = ordinal.get((c.tenant_id, c.rule_key), 0)
        ordinal[(c.tenant_id, c.rule_key)] = n + 1
        keyed.append((-_RANK.get(c.severity, 0), n, i))
    budget: dict[int, int] = {}
    out = Triage()
    for _, _, i in sorted(keyed):
        c = candidates[i]
        left = budget.get(c.tenant_id)
        if left is None:
            left = max(0, min(per_batch, per_minute - opened_last_minute.get(c.tenant_id, 0)))
        if left > 0:
            out.admitted.append(i)
            left -= 1
        else:
            out.folded.setdefault((c.tenant_id, c.rule_key), []).append(i)
        budget[c.tenant_id] = left
    out.admitted.sort()
    for indices in out.folded.values():
        indices.sort()
    return out


def opened_last_minute(tenant_ids: Collection[int], *, now: datetime | None = None) -> dict[int, int]:
    """Alerts opened per tenant in the last minute (``apps.alerts.opened``: 60 to 70 s)."""
    return opened.last_minute(tenant_ids, now=now)


def split(candidates: Sequence[Candidate]) -> Triage:
    """``triage`` with the configured limits and this minute's counts."""
    if not candidates:
        return Triage()
    return triage(candidates, opened_last_minute=opened_last_minute({c.tenant_id for c in candidates}),
                  per_batch=settings.ALERTS_NEW_PER_BATCH_MAX, per_minute=settings.ALERTS_NEW_PER_MINUTE_MAX)


def _texts(rule_name: str, rule_key: str, count: int, named: Sequence[str]) -> tuple[str, str]:
    title = f"{rule_name}: {count} more alert{'s' if count != 1 else ''} suppressed (alert storm)"
    examples = ", ".join(named[:NAMED_IN_SUMMARY]) + (", ..." if count > NAMED_IN_SUMMARY else "")
    summary = (f"{count} new alert{'s' if count != 1 else ''} of rule {rule_key} folded into this one by the "
               f"alert-storm guard (at most {settings.ALERTS_NEW_PER_BATCH_MAX} new alerts per batch and "
               f"{settings.ALERTS_NEW_PER_MINUTE_MAX} per minute per tenant: ALERTS_NEW_PER_BATCH_MAX, "
               f"ALERTS_NEW_PER_MINUTE_MAX), e.g. {examples}. Their events are still counted and stored.")
    return title[:300], summary


def fold(*, tenant: Tenant, rule_key: str, rule_name: str, rule_version: int, category: str, severity: str,
         labels: dict, recommended_action: str, window_seconds: int, folded_keys: Sequence[str],
         trace_ids: Sequence[str], first_seen: datetime, last_seen: datetime, source_received_at: datetime,
         auto_resolve_seconds: int | None = None) -> FireResult:
    """Open, or feed, the alert of (tenant, rule) that stands for ``len(folded_keys)`` held-back alerts.

    ``folded_keys`` name the held-back groups (e.g. ``plugin_id=p-17``); the first ones become the
    alert's samples and are named in its summary. Its count is the number of alerts folded so far;
    title and summary follow it. Runs in the caller's (detect batch) transaction.
    """
    n = len(folded_keys)
    title, summary = _texts(rule_name, rule_key, n, folded_keys)
    outcome = fire_alert(
        tenant=tenant, plugin=None, rule_key=rule_key, rule_version=rule_version, category=category,
        severity=severity, title=title, summary=summary, recommended_action=recommended_action,
        group_key=dict(FOLD_GROUP_KEY), labels={**labels, FOLD_LABEL[0]: FOLD_LABEL[1]},
        window_seconds=window_seconds, occurrences=n, first_seen=first_seen, last_seen=last_seen,
        trace_ids=list(trace_ids)[:MAX_TRACE_IDS], samples=list(folded_keys)[:MAX_SAMPLES],
        source_received_at=source_received_at, auto_resolve_seconds=auto_resolve_seconds)
    alert = outcome.alert
    if not outcome.created:
        alert.refresh_from_db(fields=["count", "samples"])
        alert.title, alert.summary = _texts(rule_name, rule_key, alert.count, alert.samples)
        Alert.objects.filter(pk=alert.pk).update(title=alert.title, summary=alert.summary)
    return outcome
