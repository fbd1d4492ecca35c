"""Notification policy matching (apps/delivery/routing.py): pure functions, no database."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from apps.delivery.routing import PolicySpec, group_key, group_labels, matches, route, validate_matchers

# 2026-11-30 is a Monday.
MON_10_UTC = datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc)


def alert(**over) -> dict:
    base = {"id": 7, "tenant": "acme", "plugin": "checkout", "severity": "critical", "category": "error",
            "rule": {"key": "plugin-error-burst", "version": 1}, "source": "log_rule",
            "labels": {"env": "prod", "team": "payments-eu"}}
    base.update(over)
    return base


@pytest.mark.parametrize("matchers,expected", [
    ({}, True),
    ({"severity_at_least": "critical"}, True),
    ({"severity_at_least": "emergency"}, False),
    ({"severities": ["warning", "critical"]}, True),
    ({"severities": ["warning"]}, False),
    ({"categories": ["security"]}, False),
    ({"plugins": ["checkout", "cart"]}, True),
    ({"rules": ["plugin-error-burst"]}, True),
    ({"rules": ["other"]}, False),
    ({"sources": ["alertmanager"]}, False),
    ({"labels": {"env": "prod"}}, True),
    ({"labels": {"env": "staging"}}, False),
    ({"labels": {"region": "eu"}}, False),  # a label the alert lacks never equals
    ({"labels_regex": {"team": "payments-.*"}}, True),
    ({"labels_regex": {"team": "payments"}}, False),  # full match, not search
    ({"labels_regex": {"missing": ".*"}}, False),
    ({"severity_at_least": "warning", "labels": {"env": "prod"}, "plugins": ["checkout"]}, True),
])
def test_matchers(matchers, expected):
    assert matches(validate_matchers(matchers), alert(), MON_10_UTC) is expected


@pytest.mark.parametrize("active,at,expected", [
    # business hours in Berlin (UTC+1 in winter): 10:00 UTC is 11:00 there
    ({"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"},
     MON_10_UTC, True),
    ({"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00", "timezone": "Europe/Berlin"},
     datetime(2026, 11, 30, 17, 30, tzinfo=timezone.utc), False),  # 18:30 in Berlin
    ({"days": ["sat", "sun"], "start": "00:00", "end": "23:59", "timezone": "UTC"}, MON_10_UTC, False),
    # nights span midnight: Monday 22:00 -> Tuesday 06:00 belongs to Monday's window
    ({"days": ["mon"], "start": "22:00", "end": "06:00", "timezone": "UTC"},
     datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc), True),
    ({"days": ["mon"], "start": "22:00", "end": "06:00", "timezone": "UTC"},
     datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc), False),  # Monday 03:00 is Sunday night's window
    ({"days": ["mon"], "start": "22:00", "end": "06:00", "timezone": "UTC"},
     datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc), True),
])
def test_active_time_ranges(active, at, expected):
    assert matches(validate_matchers({"active": active}), alert(), at) is expected


def policy(pid, matchers=None, channels=(), **kw) -> PolicySpec:
    return PolicySpec(id=pid, name=f"p{pid}", matchers=validate_matchers(matchers or {}), channel_ids=tuple(channels),
                      **kw)


def test_first_match_wins_unless_continue():
    policies = [policy(1, {"severity_at_least": "critical"}, [10], webhooks=False),
                policy(2, {"plugins": ["checkout"]}, [20]),
                policy(3, {}, [30])]
    r = route(policies, alert(), MON_10_UTC)
    assert [p.id for p in r.matched] == [1] and list(r.channels) == [10] and r.webhooks is False

    policies[0] = policy(1, {"severity_at_least": "critical"}, [10], webhooks=False, continue_matching=True)
    r = route(policies, alert(), MON_10_UTC)
    assert [p.id for p in r.matched] == [1, 2] and list(r.channels) == [10, 20]
    assert r.webhooks is True  # the second policy keeps the webhooks

    r = route(policies, alert(severity="info", plugin="cart"), MON_10_UTC)
    assert [p.id for p in r.matched] == [3] and list(r.channels) == [30]


def test_no_match_falls_back_to_webhooks_only():
    r = route([policy(1, {"severity_at_least": "emergency"}, [10], webhooks=False)], alert(), MON_10_UTC)
    assert r.matched == [] and r.webhooks is True and r.channels == {}


def test_a_channel_reached_twice_keeps_the_first_policy():
    first = policy(1, {}, [10], continue_matching=True, group_by=("plugin",))
    second = policy(2, {}, [10, 20])
    r = route([first, second], alert(), MON_10_UTC)
    assert r.channels[10] is first and r.channels[20] is second


def test_group_labels_and_key():
    values = group_labels(["plugin", "rule", "env", "absent"], alert())
    assert values == {"plugin": "checkout", "rule": "plugin-error-burst", "env": "prod", "absent": ""}
    assert group_key(values) == group_key(dict(reversed(list(values.items()))))  # order does not matter
    assert group_key(values) != group_key({**values, "plugin": "cart"})


@pytest.mark.parametrize("bad,message", [
    ("x", "expected an object"),
    ({"colour": ["red"]}, "unknown colour"),
    ({"severity_at_least": "loud"}, "severity_at_least: unknown 'loud'"),
    ({"severities": ["loud"]}, "severities: unknown loud"),
    ({"plugins": "checkout"}, "plugins: expected a list"),
    ({"labels": {"env": 1}}, "labels: expected an object of string values"),
    ({"labels_regex": {"team": "(unclosed"}}, "labels_regex.team: not a valid RE2 pattern"),
    ({"active": {"start": "25:00"}}, "active.start: expected HH:MM"),
    ({"active": {"days": ["someday"]}}, "active.days"),
    ({"active": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
])
def test_bad_matchers_name_the_field(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        validate_matchers(bad)
