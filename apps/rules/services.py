"""Every write to rules goes through here: the admin, the API, sync_rules and the demo.

Contract for each write: the input is validated by ``apps.rules.spec`` (errors name the rule and
the field; ``RuleInvalid`` carries the full list), the rule's ``version`` goes up by one and a
``RuleRevision`` row keeps the new spec, an ``AuditEvent`` is written, and the ``RulesetVersion``
row is bumped, all in one transaction, so workers recompile exactly when a change committed.
A write that changes nothing (same spec) bumps nothing and writes no history.

Rules are disabled, never deleted: alerts and revisions keep referring to their key.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from django.db import transaction
from django.db.models import F

from apps.audit.services import describe_actor, record
from apps.core import clock
from apps.core.errors import Conflict, NotFound, Unprocessable
from apps.rules.models import LogRule, RuleOverride, RuleRevision, RulesetVersion
from apps.rules.selectors import get_rule
from apps.rules.metric_spec import MetricRuleSpec
from apps.rules.spec import Override, RulePackError, RuleSpec, load_pack, parse_pack, parse_rule, rule_to_dict
from apps.tenants.models import Tenant

# Path segments of the rules API: a rule with one of these ids could not be addressed.
RESERVED_KEYS = frozenset({"import", "export", "test"})


class RuleInvalid(Unprocessable):
    """One or more rules are invalid; ``errors`` lists every problem (HTTP 422)."""

    code = "invalid_rule"

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors), details={"errors": errors})
        self.errors = errors


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"created {len(self.created)}, updated {len(self.updated)}, "
                f"unchanged {len(self.unchanged)}, disabled {len(self.disabled)}")


def _label(actor: Any) -> str:
    return describe_actor(actor)[2][:200]


def _reserved(specs: Iterable[RuleSpec]) -> list[str]:
    return [f"rule '{s.id}': id: {s.id!r} is reserved (it is a path of the rules API)"
            for s in specs if s.id in RESERVED_KEYS]


def validate_rule(raw: Any) -> RuleSpec:
    """Parse one rule mapping (pack format); raise ``RuleInvalid`` listing every problem."""
    try:
        spec = parse_rule(raw)
    except RulePackError as exc:
        raise RuleInvalid(exc.errors) from None
    errors = _reserved([spec])
    if errors:
        raise RuleInvalid(errors)
    return spec


def validate_pack(text: str | None = None, *, doc: Any = None) -> list[RuleSpec]:
    """Parse a YAML/JSON pack (text) or a decoded one (doc); raise ``RuleInvalid`` with every error."""
    try:
        specs = load_pack(text) if text is not None else parse_pack(doc)
    except RulePackError as exc:
        raise RuleInvalid(exc.errors) from None
    errors = _reserved(specs)
    if errors:
        raise RuleInvalid(errors)
    return specs


def bump_ruleset_version() -> int:
    """+1 on the single RulesetVersion row (inside the caller's transaction); returns the new value."""
    stamp = uuid.uuid4().hex
    if not RulesetVersion.objects.filter(pk=1).update(version=F("version") + 1, stamp=stamp):
        RulesetVersion.objects.get_or_create(pk=1, defaults={"version": 1, "stamp": stamp})
    return RulesetVersion.objects.get(pk=1).version


def _columns(spec: RuleSpec | MetricRuleSpec) -> dict[str, Any]:
    common = dict(name=spec.name, category=spec.category, description=spec.description, enabled=spec.enabled,
                  severity=spec.severity, spec=rule_to_dict(spec))
    if isinstance(spec, MetricRuleSpec):
        # A changed metric rule is due at once (next_eval_at None), so its new condition applies now.
        return dict(common, kind=spec.kind, threshold_count=0, cooldown_seconds=0, next_eval_at=None,
                    window_seconds=spec.window_s if spec.kind != "absence" else spec.for_s)
    if spec.kind != "log":
        # Spike and log anomaly rules count in the detect worker and are judged on the metric schedule too.
        window = spec.spike.timeframe_s if spec.spike else spec.anomaly.window_s
        return dict(common, kind=spec.kind, threshold_count=0, window_seconds=window,
                    cooldown_seconds=spec.cooldown_s, next_eval_at=None)
    return dict(common, kind="log", threshold_count=spec.threshold.count, window_seconds=spec.threshold.window_s,
                cooldown_seconds=spec.cooldown_s, next_eval_at=None)


def _save(rule: LogRule | None, spec: RuleSpec, *, actor: Any, source: str,
          change: str | None = None) -> tuple[LogRule, str | None]:
    """Create or update ``rule`` from ``spec``; returns (rule, change) with change None if equal.

    Caller holds the transaction (and the row lock for an update).
    """
    now, label = clock.now(), _label(actor)
    canonical = rule_to_dict(spec)
    if rule is None:
        rule = LogRule.objects.create(key=spec.id, version=1, source=source, created_at=now, updated_at=now,
                                      updated_by=label, **_columns(spec))
        change = RuleRevision.Change.CREATED
    else:
        if rule.spec == canonical:
            if source and rule.source != source:  # e.g. a pack adopting an identical API-made rule
                LogRule.objects.filter(pk=rule.pk).update(source=source)
                rule.source = source
            return rule, None
        previous = rule.spec
        for name, value in _columns(spec).items():
            setattr(rule, name, value)
        rule.version += 1
        rule.source, rule.updated_at, rule.updated_by = source or rule.source, now, label
        rule.save()
        if change is None:
            change = RuleRevision.Change.DISABLED if previous.get("enabled", True) and not spec.enabled \
                else RuleRevision.Change.UPDATED
    RuleRevision.objects.create(rule=rule, version=rule.version, spec=canonical, change=change, source=rule.source,
                                changed_by=label, changed_at=now)
    record(f"rule.{change}", actor=actor, target=rule,
           data={"key": rule.key, "version": rule.version, "source": rule.source})
    bump_ruleset_version()
    return rule, change


def _locked(key: str) -> LogRule:
    rule = LogRule.objects.select_for_update().filter(key=key).first()
    if rule is None:
        raise NotFound(f"rule {key!r} not found")
    return rule


def rule_create(*, raw: Any, actor: Any, source: str = "api") -> LogRule:
    """Create a rule from a pack-format mapping. ``RuleInvalid``; ``Conflict`` if the id exists."""
    spec = validate_rule(raw)
    with transaction.atomic():
        if LogRule.objects.filter(key=spec.id).exists():
            raise Conflict(f"rule {spec.id!r} already exists", details={"key": spec.id})
        return _save(None, spec, actor=actor, source=source)[0]


def rule_update(*, key: str, raw: Any, actor: Any, source: str = "api") -> LogRule:
    """Replace rule ``key`` with ``raw`` (its ``id`` may be omitted but must not differ)."""
    if isinstance(raw, dict):
        raw = {**raw, "id": raw.get("id", key)}
        if raw["id"] != key:
            raise RuleInvalid([f"rule '{key}': id: cannot be changed (got {raw['id']!r}); create a new rule"])
    spec = validate_rule(raw)
    with transaction.atomic():
        return _save(_locked(key), spec, actor=actor, source=source)[0]


def rule_patch(*, key: str, changes: dict, actor: Any, source: str = "api") -> LogRule:
    """Merge top-level ``changes`` into rule ``key``'s spec and save (same validation)."""
    with transaction.atomic():
        rule = _locked(key)
        return rule_update(key=key, raw={**rule.spec, **changes}, actor=actor, source=source)


def rule_disable(*, key: str, actor: Any, source: str = "api") -> LogRule:
    """Disable rule ``key`` (idempotent: an already disabled rule is returned unchanged)."""
    with transaction.atomic():
        rule = _locked(key)
        if not rule.enabled:
            return rule
        spec = validate_rule({**rule.spec, "enabled": False})
        return _save(rule, spec, actor=actor, source=source, change=RuleRevision.Change.DISABLED)[0]


def rules_sync(*, specs: list[RuleSpec], actor: Any, source: str = "", sources: dict[str, str] | None = None,
               disable_missing: str | None = None) -> SyncReport:
    """Upsert ``specs`` (already validated) all-or-nothing, in key order.

    ``disable_missing``: a source prefix; enabled rules whose source starts with it and whose key
    is not in ``specs`` are disabled (a rule removed from its pack stops firing but keeps history).
    ``sources`` (rule key -> source, one per pack file) wins over ``source`` for the keys it names.
    """
    report = SyncReport()
    sources = sources or {}
    keys = {s.id for s in specs}
    with transaction.atomic():
        existing = {r.key: r for r in LogRule.objects.select_for_update().filter(key__in=keys).order_by("key")}
        for spec in sorted(specs, key=lambda s: s.id):
            src = sources.get(spec.id, source)
            rule, change = _save(existing.get(spec.id), spec, actor=actor, source=src)
            {None: report.unchanged, RuleRevision.Change.CREATED: report.created}.get(change, report.updated).append(
                spec.id)
        if disable_missing:
            gone = (LogRule.objects.select_for_update().filter(source__startswith=disable_missing, enabled=True)
                    .exclude(key__in=keys).order_by("key"))
            for rule in gone:
                spec = validate_rule({**rule.spec, "enabled": False})
                _save(rule, spec, actor=actor, source=rule.source, change=RuleRevision.Change.DISABLED)
                report.disabled.append(rule.key)
        if report.created or report.updated or report.disabled:
            record("rules.synced", actor=actor, target_type="rules.logrule",
                   data={"source": disable_missing or source,
                         "created": report.created, "updated": report.updated, "disabled": report.disabled})
    return report


def pack_import(*, text: str | None = None, doc: Any = None, actor: Any, source: str = "api") -> SyncReport:
    """Validate a whole pack and upsert it (nothing is written if any rule is bad; no disabling)."""
    specs = validate_pack(text, doc=doc)
    return rules_sync(specs=specs, actor=actor, source=source)


# --------------------------------------------------------------------------- tenant overrides


OVERRIDE_FIELDS = ("threshold", "severity", "enabled", "cooldown")


def _tenant(tenant: Tenant | str) -> Tenant:
    if isinstance(tenant, Tenant):
        return tenant
    found = Tenant.objects.filter(slug=tenant).first()
    if found is None:
        raise NotFound(f"tenant {tenant!r} not found")
    return found


def validate_override(*, rule: LogRule, tenant_slug: str, body: Any) -> Override:
    """Validate a pack-format override body for ``rule``; raise ``RuleInvalid`` naming the field."""
    key = rule.key
    if not isinstance(body, dict):
        raise RuleInvalid([f"rule '{key}': override: must be a mapping"])
    unknown = [k for k in body if k not in OVERRIDE_FIELDS and k != "tenant"]
    if unknown:
        raise RuleInvalid([f"rule '{key}': override.{k}: unknown key (known: {', '.join(OVERRIDE_FIELDS)})"
                           for k in unknown])
    try:
        o = parse_rule({**rule.spec, "overrides": [{**body, "tenant": tenant_slug}]}).overrides[0]
        # A metric rule's override has severity and enabled only; the row's other columns stay empty.
        return o if isinstance(o, Override) else Override(tenant=o.tenant, severity=o.severity, enabled=o.enabled)
    except RulePackError as exc:
        raise RuleInvalid([e.replace("overrides[0]", "override") for e in exc.errors]) from None


def override_set(*, key: str, tenant: Tenant | str, body: dict, actor: Any) -> RuleOverride:
    """Set ``tenant``'s override of rule ``key`` from a pack-format override mapping.

    ``body``: any of ``threshold: {count, window}``, ``severity``, ``enabled``, ``cooldown``;
    it replaces the tenant's previous override as a whole. Validated by the same code as packs;
    errors read ``rule '<key>': override.threshold.count: ...``.
    """
    tenant = _tenant(tenant)
    with transaction.atomic():
        rule = _locked(key)
        o = validate_override(rule=rule, tenant_slug=tenant.slug, body=body)
        row, created = RuleOverride.objects.update_or_create(
            rule=rule, tenant=tenant,
            defaults=dict(threshold_count=o.count, window_seconds=o.window_s, severity=o.severity or "",
                          cooldown_seconds=o.cooldown_s, enabled=o.enabled, updated_at=clock.now(),
                          updated_by=_label(actor)))
        record("rule.override_set", actor=actor, target=rule, tenant=tenant,
               data={"key": key, "tenant": tenant.slug, "override": body})
        bump_ruleset_version()
    return row


def override_clear(*, key: str, tenant: Tenant | str, actor: Any) -> bool:
    """Remove ``tenant``'s override of rule ``key``; False if there was none."""
    tenant = _tenant(tenant)
    with transaction.atomic():
        rule = _locked(key)
        deleted, _ = RuleOverride.objects.filter(rule=rule, tenant=tenant).delete()
        if deleted:
            record("rule.override_cleared", actor=actor, target=rule, tenant=tenant,
                   data={"key": key, "tenant": tenant.slug})
            bump_ruleset_version()
    return bool(deleted)


def override_to_dict(row: RuleOverride) -> dict[str, Any]:
    """A stored override in pack format (what ``override_set`` accepts)."""
    from apps.core.vocabulary import format_duration

    d: dict[str, Any] = {"tenant": row.tenant.slug}
    threshold = {}
    if row.threshold_count is not None:
        threshold["count"] = row.threshold_count
    if row.window_seconds is not None:
        threshold["window"] = format_duration(row.window_seconds)
    if threshold:
        d["threshold"] = threshold
    if row.severity:
        d["severity"] = row.severity
    if row.enabled is not None:
        d["enabled"] = row.enabled
    if row.cooldown_seconds is not None:
        d["cooldown"] = format_duration(row.cooldown_seconds)
    return d


__all__ = ["RuleInvalid", "SyncReport", "validate_rule", "validate_pack", "bump_ruleset_version", "rule_create",
           "rule_update", "rule_patch", "rule_disable", "rules_sync", "pack_import", "validate_override", "override_set",
           "override_clear", "override_to_dict", "get_rule"]
