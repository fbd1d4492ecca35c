"""Pure functions: a rule as one tenant sees it, with both override layers applied.

Layer order (later wins, field by field): the rule, the pack's ``overrides`` entry for the
tenant, the tenant's ``RuleOverride`` row. ``spec.RuleSpec.for_tenant`` applies one override,
so the two layers are first merged into a single ``Override``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Mapping

from apps.rules.spec import Override, RuleSpec, effective_specs


def merge_overrides(base: Override | None, top: Override) -> Override:
    """``top``'s non-None fields over ``base`` (same tenant)."""
    if base is None:
        return top
    if not isinstance(base, Override):  # a metric rule's pack override: severity and enabled only
        base = Override(tenant=base.tenant, severity=base.severity, enabled=base.enabled)
    return Override(
        tenant=top.tenant,
        count=base.count if top.count is None else top.count,
        window_s=base.window_s if top.window_s is None else top.window_s,
        severity=top.severity or base.severity,
        enabled=base.enabled if top.enabled is None else top.enabled,
        cooldown_s=base.cooldown_s if top.cooldown_s is None else top.cooldown_s,
    )


def with_tenant_override(spec: RuleSpec, row: Override) -> RuleSpec:
    """``spec`` with ``row`` layered over the pack's override for ``row.tenant``."""
    pack = next((o for o in spec.overrides if o.tenant == row.tenant), None)
    others = tuple(o for o in spec.overrides if o.tenant != row.tenant)
    return replace(spec, overrides=others + (merge_overrides(pack, row),))


def tenant_view(spec: RuleSpec, tenant: str, rows: Mapping[str, Override] | None = None) -> RuleSpec:
    """The rule as ``tenant`` sees it (disabled rules included); ``rows``: rule key -> row."""
    row = (rows or {}).get(spec.id)
    return (with_tenant_override(spec, row) if row else spec).for_tenant(tenant)


def tenant_specs(specs: Iterable[RuleSpec], tenant: str,
                 rows: Mapping[str, Override] | None = None) -> list[RuleSpec]:
    """Enabled rules of ``tenant`` with both override layers applied (input of the matcher)."""
    rows = rows or {}
    layered = [with_tenant_override(s, rows[s.id]) if s.id in rows else s for s in specs]
    return effective_specs(layered, tenant)


def override_signature(specs: Iterable[RuleSpec], tenant: str,
                       rows: Mapping[str, Override] | None = None) -> tuple:
    """What makes ``tenant``'s compiled rule set differ from the plain one.

    Tenants with equal signatures share one compiled set; most tenants have none (``()``).
    Tenant names are dropped so two tenants with identical overrides share too.
    """
    sig = []
    for s in specs:
        pack = next((o for o in s.overrides if o.tenant == tenant), None)
        row = (rows or {}).get(s.id)
        if pack or row:
            o = merge_overrides(pack, row) if row else pack
            sig.append((s.id, o.count, o.window_s, o.severity, o.enabled, o.cooldown_s))
    return tuple(sig)
