"""Pure functions (no ORM): fingerprints, silence matchers, escalation steps."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson

from .models import Severity

MATCHER_KEYS = ("plugin", "rule", "severity", "labels")
CHANNELS = ("webhook", "email", "sms")  # built in; other names are the tenant's NotificationChannels
STEP_KEYS = ("after_minutes", "channels", "group", "oncall", "repeat")


def fingerprint_for(rule_key: str, group_key: dict) -> str:
    """sha256 hex of the rule key and the canonical JSON of the group key.

    Canonical = sorted keys, no whitespace, so {"a": 1, "b": 2} and {"b": 2, "a": 1} are one alert.
    """
    canonical = orjson.dumps(group_key, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(rule_key.encode() + b"\x00" + canonical).hexdigest()


def validate_matchers(matchers: Any) -> dict:
    """Return a clean matcher dict or raise ValueError naming the bad key.

    Shape: {"plugin": slug, "rule": rule_key, "severity": one of Severity, "labels": {str: str}};
    every key optional (absent = match anything). An empty dict silences the whole tenant.
    """
    if matchers is None:
        return {}
    if not isinstance(matchers, dict):
        raise ValueError("matchers must be an object")
    unknown = sorted(set(matchers) - set(MATCHER_KEYS))
    if unknown:
        raise ValueError(f"unknown matcher(s) {', '.join(unknown)}; known: {', '.join(MATCHER_KEYS)}")
    clean: dict = {}
    for key in ("plugin", "rule"):
        if key in matchers:
            value = matchers[key]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"matcher '{key}' must be a non-empty string")
            clean[key] = value.strip()
    if "severity" in matchers:
        if matchers["severity"] not in Severity.values:
            raise ValueError(f"matcher 'severity' must be one of {', '.join(Severity.values)}")
        clean["severity"] = matchers["severity"]
    if "labels" in matchers:
        labels = matchers["labels"]
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise ValueError("matcher 'labels' must be an object of string values")
        if labels:
            clean["labels"] = dict(labels)
    return clean


def matchers_match(matchers: dict, *, plugin_slug: str | None, rule_key: str, severity: str, labels: dict) -> bool:
    """Equality on every present matcher; labels must all be present with equal values."""
    if "plugin" in matchers and matchers["plugin"] != plugin_slug:
        return False
    if "rule" in matchers and matchers["rule"] != rule_key:
        return False
    if "severity" in matchers and matchers["severity"] != severity:
        return False
    for name, value in matchers.get("labels", {}).items():
        if str(labels.get(name)) != value:
            return False
    return True


# Built-in escalation when no EscalationPolicy row matches (DESIGN 3.7). after_minutes counts from
# when the alert opened (first step) or from the previous escalation (later steps).
DEFAULT_ESCALATION: dict[str, tuple[list[dict], int]] = {
    Severity.INFO: ([], 0),
    Severity.WARNING: ([{"after_minutes": 30, "channels": ["webhook"], "group": "operators"}], 0),
    Severity.CRITICAL: ([{"after_minutes": 5, "channels": ["webhook", "email"], "group": "operators"}], 0),
    Severity.EMERGENCY: ([{"after_minutes": 0, "channels": ["webhook", "email", "sms"], "group": "operators"}], 0),
}


def validate_steps(steps: Any, repeat: int, check_names: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Return clean escalation steps or raise ValueError naming the step and field.

    The shape only: whether a channel or rotation name exists for the tenant is
    ``apps.alerts.policies.validate_policy_steps``'s business (through ``check_names(i, step)``, which
    raises ValueError). A step's ``group`` may also be given as
    ``{"oncall": "<rotation>"}``, stored as the step's ``oncall``.
    """
    if not isinstance(steps, list):
        raise ValueError("steps must be a list")
    clean = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ValueError(f"step {i}: must be an object")
        unknown = sorted(set(step) - set(STEP_KEYS))
        if unknown:
            raise ValueError(f"step {i}: unknown key(s) {', '.join(unknown)}; known: {', '.join(STEP_KEYS)}")
        after = step.get("after_minutes")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise ValueError(f"step {i}: after_minutes must be an integer >= 0")
        channels = step.get("channels", ["webhook"])
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) and c for c in channels):
            raise ValueError(f"step {i}: channels must be a non-empty list of {', '.join(CHANNELS)} "
                             "or names of the tenant's notification channels")
        group, oncall = step.get("group", ""), step.get("oncall", "")
        if isinstance(group, dict) and set(group) == {"oncall"} and not oncall:
            group, oncall = "", group["oncall"]
        if not isinstance(group, str):
            raise ValueError(f'step {i}: group must be a string or {{"oncall": "<rotation>"}}')
        if not isinstance(oncall, str):
            raise ValueError(f"step {i}: oncall must be a rotation name")
        if oncall and not set(channels) & {"email", "sms"}:
            raise ValueError(f"step {i}: oncall {oncall!r} pages through contact methods: "
                             "add 'email' and/or 'sms' to channels")
        clean_step = {"after_minutes": after, "channels": channels, "group": group}
        if oncall:
            clean_step["oncall"] = oncall
        if "repeat" in step:
            times = step["repeat"]
            if not isinstance(times, int) or isinstance(times, bool) or times < 0:
                raise ValueError(f"step {i}: repeat must be an integer >= 0")
            clean_step["repeat"] = times
        if check_names is not None:
            check_names(i, clean_step)
        clean.append(clean_step)
    # A repeating step of 0 minutes would re-notify on every sweep.
    for i, times in enumerate(step_repeats(clean, repeat)):
        if times and clean[i]["after_minutes"] < 1:
            raise ValueError(f"step {i}: a repeated step needs after_minutes >= 1")
    return clean


def step_repeats(steps: list[dict], repeat: int) -> list[int]:
    """How many more times each step runs after its first: its own ``repeat``, else 0, except the
    last step, which defaults to the policy's ``repeat``."""
    last = len(steps) - 1
    return [int(s.get("repeat", repeat if i == last else 0)) for i, s in enumerate(steps)]


def escalation_step(steps: list[dict], repeat: int, level: int) -> dict | None:
    """The step that takes an alert from ``level`` to ``level + 1``, or None when exhausted.

    Steps run in order, each ``1 + its repeats`` times (``step_repeats``).
    """
    for step, times in zip(steps, step_repeats(steps, repeat)):
        if level <= times:
            return step
        level -= times + 1
    return None


def next_escalation_time(steps: list[dict], repeat: int, level: int, since: datetime) -> datetime | None:
    step = escalation_step(steps, repeat, level)
    return None if step is None else since + timedelta(minutes=step["after_minutes"])
