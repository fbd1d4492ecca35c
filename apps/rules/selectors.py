"""Reads of rules: the stored specs, the ruleset version, and one tenant's view of a rule.

Stored specs were validated when written, so parsing them back only fails if someone edited the
database by hand; such a rule is logged and skipped (detection must not stop for every tenant
because of one row), never silently changed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import connection

from apps.core.errors import NotFound
from apps.rules.log_kind_spec import LOG_KINDS
from apps.rules.models import LogRule, RuleOverride, RuleRevision, RulesetVersion
from apps.rules.spec import Override, RulePackError, RuleSpec, parse_rule

logger = logging.getLogger(__name__)


def ruleset_version() -> int:
    """The current ruleset version (0 before any rule was written). One indexed query."""
    return ruleset_stamp()[0]


def ruleset_stamp() -> tuple[int, str]:
    """(version, random stamp of that bump): what compiled rule sets are cached under. One query,
    in plain SQL: the detect worker asks once per batch, and the ORM took more time to build the
    query than the database took to answer it."""
    with connection.cursor() as cursor:
        cursor.execute(_STAMP_SQL)
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, "")


_STAMP_SQL = f"SELECT version, stamp FROM {RulesetVersion._meta.db_table} WHERE id = 1"


def row_override(row: RuleOverride, tenant_slug: str) -> Override:
    return Override(tenant=tenant_slug, count=row.threshold_count, window_s=row.window_seconds,
                    severity=row.severity or None, enabled=row.enabled, cooldown_s=row.cooldown_seconds)


def spec_of(rule: LogRule) -> RuleSpec:
    """The stored rule as a ``RuleSpec``; raises ``RulePackError`` for a corrupt row."""
    return parse_rule(rule.spec)


@dataclass(frozen=True)
class Snapshot:
    """Every rule and tenant override at one ruleset version (what the engine compiles from)."""

    version: tuple[int, str]  # ruleset_stamp()
    specs: tuple[RuleSpec, ...]
    rule_versions: dict[str, int]
    # tenant slug -> rule key -> the tenant's RuleOverride row as an Override
    rows: dict[str, dict[str, Override]] = field(default_factory=dict)


def load_snapshot(version: tuple[int, str] | None = None) -> Snapshot:
    """All rules (enabled or not) and overrides: two queries. ``version`` defaults to the current."""
    if version is None:
        version = ruleset_stamp()
    specs, versions = [], {}
    # Metric rules are evaluated on their own schedule (apps.rules.metric_eval), not by the log engine;
    # spike and log anomaly rules match log lines, so the engine compiles them like count rules.
    for key, raw, rule_version in (LogRule.objects.filter(kind__in=("log",) + LOG_KINDS).order_by("key")
                                   .values_list("key", "spec", "version")):
        try:
            specs.append(parse_rule(raw))
        except RulePackError as exc:
            logger.error("stored rule %s is invalid and is skipped: %s", key, exc)
            continue
        versions[key] = rule_version
    rows: dict[str, dict[str, Override]] = {}
    for row in RuleOverride.objects.select_related("rule", "tenant"):
        rows.setdefault(row.tenant.slug, {})[row.rule.key] = row_override(row, row.tenant.slug)
    return Snapshot(version=version, specs=tuple(specs), rule_versions=versions, rows=rows)


def get_rule(key: str) -> LogRule:
    """The rule with ``key`` or ``NotFound``."""
    rule = LogRule.objects.filter(key=key).first()
    if rule is None:
        raise NotFound(f"rule {key!r} not found")
    return rule


def tenant_rows(tenant_id: int, tenant_slug: str) -> dict[str, Override]:
    """Rule key -> the tenant's override row."""
    return {r.rule.key: row_override(r, tenant_slug)
            for r in RuleOverride.objects.filter(tenant_id=tenant_id).select_related("rule")}


def revisions_of(rule: LogRule):
    return RuleRevision.objects.filter(rule=rule).order_by("-version")
