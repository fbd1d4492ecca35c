"""The detect worker's side of the inbound integrations: a stored batch's entries -> alerts.

Called by ``processing.process_batch`` inside its transaction (claimed batch, DONE mark), so a
batch's entries are applied exactly once: a crash rolls back every alert change of the batch and
the sweeper retries it whole. Entries are applied in body order (an event may fire and resolve
the same key in one batch).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from apps.alerts.external import fire_external, resolve_external
from apps.core.vocabulary import AlertSource
from apps.tenants import active
from apps.tenants.models import Plugin

from .. import tenancy
from .entries import FIRING, Entry

logger = logging.getLogger(__name__)

# Who resolves, on the timeline and in the audit log.
RESOLVED_BY = {AlertSource.ALERTMANAGER.value: "alertmanager", AlertSource.GRAFANA.value: "grafana",
               AlertSource.EVENT.value: "events"}


@dataclass(frozen=True, slots=True)
class Applied:
    fired: int = 0  # created or reopened
    absorbed: int = 0
    resolved: int = 0


def apply_entries(*, tenant_id: int | None, entries: list[Entry], received_at: datetime) -> Applied:
    """Fire, absorb or resolve one alert per entry of tenant ``tenant_id``; a tenant that is gone or
    switched off (since the batch was accepted) applies nothing, as its log events count nothing. The
    tenant comes from the process's cache (``apps.tenants.active``): a switch-off made by another
    process is seen within its TTL (5 s)."""
    tenant = active.tenant(tenant_id) if tenant_id else None
    if tenant is None:
        logger.warning("detect: inbound batch of a tenant that is gone or switched off", extra={"tenant_id": tenant_id})
        return Applied()
    wanted = {(tenant.pk, e.plugin) for e in entries if e.plugin and e.status == FIRING}
    ids = tenancy.plugin_ids(wanted) if wanted else {}
    plugins = Plugin.objects.in_bulk(list(ids.values())) if ids else {}
    fired = absorbed = resolved = 0
    for e in entries:
        if e.status == FIRING:
            plugin = plugins.get(ids.get((tenant.pk, e.plugin))) if e.plugin else None
            result = fire_external(
                tenant=tenant, plugin=plugin, source=e.source, key=e.key, severity=e.severity, title=e.title,
                summary=e.summary, labels=e.labels, annotations=e.annotations, started_at=e.started_at,
                seen_at=received_at, received_at=received_at, value=e.value)
            fired += result.created or result.reopened
            absorbed += result.absorbed
        else:
            note = f"resolved in {RESOLVED_BY.get(e.source, e.source)}" + (
                f" at {e.ended_at.isoformat()}" if e.ended_at else "")
            if resolve_external(tenant_id=tenant.pk, source=e.source, key=e.key,
                                actor=RESOLVED_BY.get(e.source, e.source), note=note) is not None:
                resolved += 1
    return Applied(fired=fired, absorbed=absorbed, resolved=resolved)
