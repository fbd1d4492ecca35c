"""The diagnostic report of one alert: every stored line of its traces, across the tenant's plugins.

Contents: each ``EventRecord`` of the alert's tenant carrying one of the alert's trace ids, within
``DIAGNOSTIC_WINDOW_SECONDS`` before ``first_seen`` and after ``last_seen``, plus the alert's
evidence (the lines the detail page shows; its masked samples when no line is stored), oldest
first, at most ``DIAGNOSTIC_MAX_LINES``; and a summary (alert, rule, timeline, deliveries).

Everything was masked at intake; before the report leaves, ``exportcheck.recheck`` runs the
detectors again over every line and the summary. A hit is masked, counted on the ``ReportRun``
row and logged with the line ids and detector kinds, never the text.

Other tenants' lines never enter: every query is filtered by the alert's tenant.
"""
from __future__ import annotations

import io
import logging
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings

from apps.alerts.models import Alert
from apps.alerts.selectors import alert_timeline
from apps.console.selectors import evidence_lines
from apps.core import clock
from apps.delivery.selectors import deliveries_for_alert
from apps.ingest.masking import get_masker
from apps.ingest.models import EventRecord
from apps.tenants.models import Plugin

from .exportcheck import recheck
from .models import ReportFormat, ReportRun

logger = logging.getLogger(__name__)

_LOGGED_LINE_IDS = 20


@dataclass
class DiagnosticReport:
    alert: Alert
    summary: dict[str, Any]
    lines: list[dict[str, Any]]
    violations: Counter = field(default_factory=Counter)

    @property
    def violation_total(self) -> int:
        return sum(self.violations.values())


def report_window(first_seen: datetime, last_seen: datetime, seconds: int) -> tuple[datetime, datetime]:
    """[first_seen - seconds, last_seen + seconds]."""
    margin = timedelta(seconds=seconds)
    return first_seen - margin, last_seen + margin


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _line(record: EventRecord, tenant_slug: str, plugins: dict[int, str], source: str) -> dict[str, Any]:
    return {"id": record.pk, "ts": _iso(record.ts), "tenant": tenant_slug,
            "plugin": plugins.get(record.plugin_id) if record.plugin_id else None,
            "level": record.level, "trace_id": record.trace_id, "message": record.message,
            "fields": record.fields, "rule_keys": record.rule_keys, "source": [source]}


def gather_lines(alert: Alert, *, limit: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    """(lines oldest first, truncated): trace lines in the window, then evidence merged in."""
    limit = limit or settings.DIAGNOSTIC_MAX_LINES
    start, end = report_window(alert.first_seen, alert.last_seen, settings.DIAGNOSTIC_WINDOW_SECONDS)
    records: list[tuple[EventRecord, str]] = []
    if alert.trace_ids:
        qs = (EventRecord.objects.filter(tenant_id=alert.tenant_id, trace_id__in=list(alert.trace_ids),
                                         ts__gte=start, ts__lte=end).order_by("ts", "id"))
        records += [(r, "trace") for r in qs[:limit + 1]]
    truncated = len(records) > limit
    records = records[:limit]
    records += [(r, "evidence") for r in evidence_lines(alert=alert)]
    plugin_ids = {r.plugin_id for r, _ in records if r.plugin_id}
    plugins = dict(Plugin.objects.filter(pk__in=plugin_ids).values_list("pk", "slug")) if plugin_ids else {}
    by_id: dict[int, dict[str, Any]] = {}
    for record, source in records:
        if record.pk in by_id:
            if source not in by_id[record.pk]["source"]:
                by_id[record.pk]["source"].append(source)
            continue
        by_id[record.pk] = _line(record, alert.tenant.slug, plugins, source)
    lines = sorted(by_id.values(), key=lambda line: (line["ts"], line["id"]))
    if not any("evidence" in line["source"] for line in lines):
        lines += [{"id": None, "ts": None, "tenant": alert.tenant.slug, "plugin": alert.plugin.slug if alert.plugin else None,
                   "level": None, "trace_id": None, "message": sample, "fields": {}, "rule_keys": [alert.rule_key],
                   "source": ["sample"]} for sample in alert.samples or []]
    return lines, truncated


def _summary(alert: Alert) -> dict[str, Any]:
    deliveries = deliveries_for_alert(alert.pk)
    return {
        "alert": {
            "id": alert.pk, "tenant": alert.tenant.slug, "plugin": alert.plugin.slug if alert.plugin else None,
            "title": alert.title, "summary": alert.summary, "severity": alert.severity, "state": alert.state,
            "category": alert.category, "source": alert.source, "count": alert.count,
            "first_seen": _iso(alert.first_seen), "last_seen": _iso(alert.last_seen),
            "created_at": _iso(alert.created_at), "resolved_at": _iso(alert.resolved_at),
            "labels": alert.labels, "annotations": alert.annotations, "trace_ids": list(alert.trace_ids or []),
            "ticket_url": alert.ticket_url,
        },
        "rule": {"key": alert.rule_key, "version": alert.rule_version},
        "timeline": [{"at": _iso(e.at), "kind": e.kind, "actor": e.actor_label or "system", "message": e.message}
                     for e in alert_timeline(alert=alert)],
        "deliveries": [{
            "id": d.pk, "channel": d.channel, "event_type": d.event_type, "state": d.state,
            "target": d.endpoint.url if d.endpoint_id else (d.notification_channel.name if d.notification_channel_id
                                                             else ", ".join(d.recipients or [])),
            "attempts": [{"number": a.number, "started_at": _iso(a.started_at), "status_code": a.status_code,
                          "success": a.success, "latency_ms": a.latency_ms, "error": a.error}
                         for a in d.attempt_log.all()],
        } for d in deliveries],
    }


def build_report(alert: Alert) -> DiagnosticReport:
    """Gather, check and assemble the report (no rendering, no ``ReportRun`` row)."""
    masker = get_masker()
    lines, truncated = gather_lines(alert)
    violations: Counter = Counter()
    hit_lines: list[Any] = []
    for line in lines:
        # trace ids and row ids are identifiers, left untouched as at intake.
        checked = recheck({"message": line["message"], "fields": line["fields"]}, masker)
        if checked.total:
            line.update(checked.value)
            violations += checked.hits
            hit_lines.append(line["id"])
    summary = _summary(alert)
    # Identifiers, not text anyone typed into a log: trace ids, and who acted ("token:ci" reads as a
    # credential assignment to the password detector, and every alert an automation token touched
    # would count a violation).
    trace_ids = summary["alert"].pop("trace_ids")
    actors = [entry.pop("actor") for entry in summary["timeline"]]
    checked = recheck(summary, masker)
    if checked.total:
        summary = checked.value
        violations += checked.hits
        hit_lines.append("summary")
    summary["alert"]["trace_ids"] = trace_ids
    for entry, actor in zip(summary["timeline"], actors):
        entry["actor"] = actor
    if violations:
        logger.warning("diagnostic report of alert %s: the export check masked %d secret(s) intake had let "
                       "through (kinds: %s; lines: %s)", alert.pk, sum(violations.values()),
                       ", ".join(f"{k}={n}" for k, n in sorted(violations.items())),
                       ", ".join(str(i) for i in hit_lines[:_LOGGED_LINE_IDS]))
    start, end = report_window(alert.first_seen, alert.last_seen, settings.DIAGNOSTIC_WINDOW_SECONDS)
    summary["report"] = {
        "generated_at": _iso(clock.now()), "window": {"start": _iso(start), "end": _iso(end)},
        "lines": len(lines), "truncated": truncated,
        "lines_by_plugin": dict(Counter(line["plugin"] or "-" for line in lines)),
        "masking_violations": sum(violations.values()),
    }
    return DiagnosticReport(alert=alert, summary=summary, lines=lines, violations=violations)


def render_ndjson(report: DiagnosticReport) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in report.lines)


def render_zip(report: DiagnosticReport) -> bytes:
    """``report.json`` (the summary) and ``lines.ndjson``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("report.json", orjson.dumps(report.summary, option=orjson.OPT_INDENT_2))
        archive.writestr("lines.ndjson", render_ndjson(report))
    return buffer.getvalue()


def generate(alert: Alert, fmt: str) -> tuple[DiagnosticReport, bytes]:
    """Build and render the report as ``fmt`` (page: no bytes), timing it into a ``ReportRun``."""
    started = time.perf_counter()
    report = build_report(alert)
    body = {ReportFormat.NDJSON: render_ndjson, ReportFormat.ZIP: render_zip}.get(fmt, lambda r: b"")(report)
    ReportRun.objects.create(tenant_id=alert.tenant_id, alert_id=alert.pk, at=clock.now(), format=fmt,
                             seconds=time.perf_counter() - started, lines=len(report.lines),
                             violations=report.violation_total)
    return report, body
