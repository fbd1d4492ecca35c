"""A tenant's notification policies as a YAML/JSON document: export, and all-or-nothing import.

The document is ``{"policies": [...]}`` (an optional ``tenant`` key is informational), each policy
with the API's fields but channels named by NAME (ids differ between installations) and no
``position``: the list order is the evaluation order. Import makes the tenant's policies exactly the
document's (matched by name: created, updated, unchanged; policies not in it are deleted), in one
transaction; any error writes nothing and names the policy and field.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import yaml
from django.db import transaction

from apps.audit.services import record as audit
from apps.core.errors import Unprocessable

from .channel_services import POLICY_FIELDS, clean_policy, link_channels, summary
from .models import NotificationChannel, NotificationPolicy

DOC_FIELDS = tuple(f for f in POLICY_FIELDS if f != "position")


def export_doc(tenant: Any) -> dict:
    """The tenant's policies (disabled ones included) in evaluation order, channels by name."""
    rows = (NotificationPolicy.objects.filter(tenant=tenant).order_by("position", "id")
            .prefetch_related("channels", "fallback_channels"))
    out = []
    for p in rows:
        out.append({"name": p.name, "enabled": p.enabled, "matchers": p.matchers,
                    "channels": [c.name for c in sorted(p.channels.all(), key=lambda c: c.name)],
                    "webhooks": p.webhooks, "continue_matching": p.continue_matching, "group_by": p.group_by,
                    "group_wait_seconds": p.group_wait_seconds, "group_interval_seconds": p.group_interval_seconds,
                    "repeat_interval_seconds": p.repeat_interval_seconds,
                    "fallback_channels": [c.name for c in sorted(p.fallback_channels.all(), key=lambda c: c.name)]})
    return {"tenant": tenant.slug, "policies": out}


def export_text(tenant: Any, fmt: str) -> str:
    doc = export_doc(tenant)
    if fmt == "json":
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _parse(text: str | None, doc: Any) -> Any:
    if text is None:
        return doc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Unprocessable(f"document: not valid YAML or JSON: {exc}", details={"document": str(exc)}) from None


def _validate(tenant: Any, doc: Any) -> list[tuple[dict, dict]]:
    """(model values, channel links) per policy in order, or Unprocessable listing every error."""
    if not isinstance(doc, dict) or not isinstance(doc.get("policies"), list):
        raise Unprocessable('document: give {"policies": [...]}', details={"document": "policies list missing"})
    unknown = sorted(set(doc) - {"policies", "tenant"})
    if unknown:
        raise Unprocessable(f"document: unknown key {unknown[0]!r} (known: policies, tenant)")
    by_name = {c.name: c.pk for c in NotificationChannel.objects.filter(tenant=tenant)}
    errors: list[str] = []
    out: list[tuple[dict, dict]] = []
    seen: set[str] = set()
    for index, item in enumerate(doc["policies"]):
        label = f"policies[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{label}: give an object")
            continue
        label = f"policies[{index}] ({item.get('name', '?')})"
        unknown = sorted(set(item) - set(DOC_FIELDS))
        if unknown:
            errors.append(f"{label}.{unknown[0]}: unknown field (known: {', '.join(DOC_FIELDS)})")
            continue
        raw = dict(item)
        try:
            for key in ("channels", "fallback_channels"):
                names = raw.get(key)
                if names is None:
                    continue
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise Unprocessable(f"{key}: give a list of channel names")
                missing = [n for n in names if n not in by_name]
                if missing:
                    raise Unprocessable(f"{key}: no channel named {missing[0]!r} in tenant {tenant.slug}")
                raw[key] = [by_name[n] for n in names]
            values, links = clean_policy(tenant.pk, raw)
        except Unprocessable as exc:
            errors.append(f"{label}.{exc.message}")
            continue
        if values["name"] in seen:
            errors.append(f"{label}.name: appears twice in the document")
        seen.add(values["name"])
        values["position"] = (index + 1) * 10
        out.append((values, links))
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Unprocessable(f"{errors[0]}{more}; nothing was imported", code="invalid_policies",
                            details={"errors": errors})
    return out


def import_policies(*, tenant: Any, text: str | None = None, doc: Any = None, actor: Any = None) -> ImportReport:
    """Validate the whole document, then replace the tenant's policies with it in one transaction."""
    wanted = _validate(tenant, _parse(text, doc))
    report = ImportReport()
    with transaction.atomic():
        existing = {p.name: p for p in NotificationPolicy.objects.select_for_update().filter(tenant=tenant)
                    .prefetch_related("channels", "fallback_channels")}
        names = {values["name"] for values, _ in wanted}
        for name, policy in existing.items():
            if name not in names:
                audit("policy.deleted", actor=actor, target=policy, tenant=tenant,
                      data={**summary(policy), "source": "import"})
                policy.delete()
                report.deleted.append(name)
        for values, links in wanted:
            policy = existing.get(values["name"])
            before = summary(policy) if policy else None
            defaults = {f.name: f.get_default() for f in NotificationPolicy._meta.concrete_fields
                        if f.name in DOC_FIELDS and f.name not in values}
            policy = policy or NotificationPolicy(tenant=tenant)
            for key, value in {**defaults, **values}.items():
                setattr(policy, key, value)
            policy.save()
            link_channels(policy, {key: links.get(key, []) for key in ("channels", "fallback_channels")})
            after = summary(NotificationPolicy.objects.prefetch_related("channels", "fallback_channels")
                             .get(pk=policy.pk))
            if before is None:
                audit("policy.created", actor=actor, target=policy, tenant=tenant, data={**after, "source": "import"})
                report.created.append(policy.name)
            elif before != after:
                audit("policy.updated", actor=actor, target=policy, tenant=tenant, data={
                    "source": "import", **{k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}})
                report.updated.append(policy.name)
            else:
                report.unchanged.append(policy.name)
    return report
