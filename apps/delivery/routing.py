"""Notification policies as pure functions: which channels an alert reaches (no ORM here).

A tenant's policies are tried in ``position`` order. A policy matches when every matcher it sets
holds for the alert (a notification payload); the first match wins, unless that policy says
``continue_matching``, in which case later policies are tried too (Alertmanager's ``continue``).
When no policy matches, the implicit default applies: the tenant's subscribed webhooks, which is
how a tenant without policies is notified. Matchers (all optional):

``severity_at_least``  info | warning | critical | emergency
``severities``         [exact severities]
``categories`` / ``plugins`` / ``rules`` / ``sources``   [values]
``labels``             {name: value}  equality
``labels_regex``       {name: RE2 pattern}  full match
``active``             {"days": ["mon", ...], "start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"}
                       (start after end spans midnight: nights); outside it the policy does not match
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import re2

from apps.core.readable import exception_text
from apps.core.vocabulary import SEVERITIES, severity_rank

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LIST_MATCHERS = {"severities": "severity", "categories": "category", "plugins": "plugin", "rules": "rule",
                 "sources": "source"}
MATCHER_KEYS = ("severity_at_least", *LIST_MATCHERS, "labels", "labels_regex", "active")
# group_by names that are alert fields rather than labels
GROUP_FIELDS = ("tenant", "plugin", "rule", "severity", "category", "source")


@dataclass(frozen=True)
class PolicySpec:
    """What routing needs of one policy (built from a NotificationPolicy row)."""

    id: int
    name: str
    matchers: dict
    channel_ids: tuple[int, ...] = ()
    webhooks: bool = True
    continue_matching: bool = False
    group_by: tuple[str, ...] = ()
    fallback_channel_ids: tuple[int, ...] = ()


@dataclass
class Route:
    """Where one alert goes: webhooks or not, and per channel the policy that brought it there."""

    webhooks: bool
    channels: dict[int, PolicySpec] = field(default_factory=dict)
    matched: list[PolicySpec] = field(default_factory=list)


def _field(alert: dict, name: str) -> Any:
    if name == "rule":
        return (alert.get("rule") or {}).get("key")
    return alert.get(name)


def _active(spec: dict, at: datetime) -> bool:
    local = at.astimezone(ZoneInfo(spec.get("timezone") or "UTC"))
    days = spec.get("days") or DAYS
    start, end = time.fromisoformat(spec.get("start") or "00:00"), time.fromisoformat(spec.get("end") or "23:59")
    now_t = local.time()
    if start <= end:
        return DAYS[local.weekday()] in days and start <= now_t <= end
    # Spans midnight: the part after midnight belongs to the previous day's window.
    if now_t >= start:
        return DAYS[local.weekday()] in days
    return now_t <= end and DAYS[(local.weekday() - 1) % 7] in days


def matches(matchers: dict, alert: dict, at: datetime) -> bool:
    """Does the alert (a notification payload) satisfy every matcher set? ``at`` is aware."""
    least = matchers.get("severity_at_least")
    if least and severity_rank(alert.get("severity", "")) < severity_rank(least):
        return False
    for key, name in LIST_MATCHERS.items():
        wanted = matchers.get(key)
        if wanted and _field(alert, name) not in wanted:
            return False
    labels = alert.get("labels") or {}
    for name, value in (matchers.get("labels") or {}).items():
        if str(labels.get(name, "")) != str(value):
            return False
    for name, pattern in (matchers.get("labels_regex") or {}).items():
        if name not in labels or not re2.fullmatch(pattern, str(labels[name])):
            return False
    active = matchers.get("active")
    return not active or _active(active, at)


def route(policies: Sequence[PolicySpec], alert: dict, at: datetime) -> Route:
    """Walk the policies (already in order) for one alert; see the module docstring."""
    matched = []
    for policy in policies:
        if matches(policy.matchers, alert, at):
            matched.append(policy)
            if not policy.continue_matching:
                break
    if not matched:
        return Route(webhooks=True)
    out = Route(webhooks=any(p.webhooks for p in matched), matched=matched)
    for policy in matched:
        for channel_id in policy.channel_ids:
            out.channels.setdefault(channel_id, policy)  # the first policy that routes there decides grouping
    return out


def group_labels(group_by: Sequence[str], alert: dict) -> dict[str, str]:
    """The values an alert is grouped by: alert fields (``GROUP_FIELDS``) or label names."""
    labels = alert.get("labels") or {}
    return {name: str(_field(alert, name) if name in GROUP_FIELDS else labels.get(name, "")) for name in group_by}


def group_key(values: dict[str, str]) -> str:
    return hashlib.sha256(orjson.dumps(values, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def validate_matchers(raw: Any) -> dict:
    """A clean matcher dict, or ValueError naming the bad key (used by the API, admin and YAML import)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("matchers: expected an object")
    unknown = sorted(set(raw) - set(MATCHER_KEYS))
    if unknown:
        raise ValueError(f"matchers: unknown {', '.join(unknown)}; known: {', '.join(MATCHER_KEYS)}")
    out: dict[str, Any] = {}
    least = raw.get("severity_at_least")
    if least is not None:
        if least not in SEVERITIES:
            raise ValueError(f"matchers.severity_at_least: unknown {least!r}; known: {', '.join(SEVERITIES)}")
        out["severity_at_least"] = least
    for key in LIST_MATCHERS:
        if raw.get(key) is None:
            continue
        values = raw[key]
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"matchers.{key}: expected a list of non-empty strings")
        if key == "severities" and set(values) - set(SEVERITIES):
            raise ValueError(f"matchers.severities: unknown {', '.join(sorted(set(values) - set(SEVERITIES)))}")
        out[key] = list(values)
    for key in ("labels", "labels_regex"):
        if raw.get(key) is None:
            continue
        value = raw[key]
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError(f"matchers.{key}: expected an object of string values")
        if key == "labels_regex":
            for name, pattern in value.items():
                try:
                    re2.compile(pattern)
                except re2.error as exc:
                    raise ValueError(f"matchers.labels_regex.{name}: not a valid RE2 pattern: "
                                     f"{exception_text(exc)}") from None
        out[key] = dict(value)
    if raw.get("active") is not None:
        out["active"] = _validate_active(raw["active"])
    return out


def _validate_active(active: Any) -> dict:
    if not isinstance(active, dict):
        raise ValueError("matchers.active: expected an object with days, start, end, timezone")
    unknown = sorted(set(active) - {"days", "start", "end", "timezone"})
    if unknown:
        raise ValueError(f"matchers.active: unknown {', '.join(unknown)}")
    days = active.get("days", list(DAYS))
    if not isinstance(days, list) or not days or set(days) - set(DAYS):
        raise ValueError(f"matchers.active.days: expected a list of {', '.join(DAYS)}")
    for key in ("start", "end"):
        try:
            time.fromisoformat(str(active.get(key, "00:00")))
        except ValueError:
            raise ValueError(f"matchers.active.{key}: expected HH:MM, got {active.get(key)!r}") from None
    tz = active.get("timezone", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"matchers.active.timezone: unknown time zone {tz!r}") from None
    return {"days": list(days), "start": str(active.get("start", "00:00")), "end": str(active.get("end", "23:59")),
            "timezone": str(tz)}
