"""Alertmanager's webhook (``webhook_configs``, payload version 4) -> ``Entry`` objects.

Contract (prometheus/alertmanager notify/webhook/webhook.go, template/template.go): an object with
``version``, ``groupKey``, ``truncatedAlerts``, ``status``, ``receiver``, ``groupLabels``,
``commonLabels``, ``commonAnnotations``, ``externalURL`` and ``alerts[]`` of ``status``, ``labels``,
``annotations``, ``startsAt``, ``endsAt`` (Go's zero time while firing), ``generatorURL``,
``fingerprint``. One entry per alert, keyed by its fingerprint.
"""
from __future__ import annotations

from typing import Any

from apps.core.events import EventError
from apps.core.vocabulary import AlertSource

from . import entries as f
from .entries import Entry

URL_KEYS = ("generatorURL",)


def envelope(doc: Any) -> list:
    """The ``alerts`` list of a webhook body; ``EventError`` naming the field if it can never be valid."""
    if not isinstance(doc, dict):
        raise EventError("body", f"must be a JSON object (Alertmanager webhook v4), got {f.json_type(doc)}")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise EventError("alerts", f"must be an array, got {f.json_type(alerts)}")
    if not alerts:
        raise EventError("alerts", "is empty")
    for name in ("version", "groupKey", "receiver", "externalURL", "status"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise EventError(name, f"must be a string, got {f.json_type(doc[name])}")
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        if doc.get(name) is not None and not isinstance(doc[name], dict):
            raise EventError(name, f"must be an object, got {f.json_type(doc[name])}")
    return alerts


def parse(doc: Any) -> tuple[list[Entry], list[dict]]:
    """(entries, rejected ``{"index", "error"}``) of a webhook body; see ``envelope`` for 422s."""
    alerts = envelope(doc)
    external_url = f.text(doc.get("externalURL"), "externalURL", limit=f.MAX_LABEL_VALUE)
    out, rejected = [], []
    for i, alert in enumerate(alerts):
        try:
            out.append(entry(alert, f"alerts[{i}]", external_url))
        except EventError as exc:
            rejected.append({"index": i, "error": str(exc)})
    return out, rejected


def entry(alert: Any, where: str, external_url: str, *, source: str = AlertSource.ALERTMANAGER.value,
          fallback_title: str = "Alertmanager alert") -> Entry:
    if not isinstance(alert, dict):
        raise EventError(where, f"must be an object, got {f.json_type(alert)}")
    status = f.status(alert.get("status"), f"{where}.status")
    labels = f.string_map(alert.get("labels"), f"{where}.labels")
    if not labels:
        raise EventError(f"{where}.labels", "is required (an alert is identified by its labels)")
    annotations = f.any_map(alert.get("annotations"), f"{where}.annotations")
    started = f.optional_time(alert.get("startsAt"), f"{where}.startsAt")
    ended = f.optional_time(alert.get("endsAt"), f"{where}.endsAt")
    links: dict[str, Any] = {k: f.text(alert.get(k), f"{where}.{k}", limit=f.MAX_LABEL_VALUE)
                             for k in URL_KEYS if alert.get(k)}
    if external_url:
        links["externalURL"] = external_url
    return Entry(
        source=source, key=f.key_of(alert.get("fingerprint"), f"{where}.fingerprint", labels),
        status=status, severity=f.severity_from(labels.get("severity")),
        title=f.title_of(labels, annotations, fallback_title),
        summary=f.text(annotations.get("description"), f"{where}.annotations.description"),
        labels=labels, annotations={**annotations, **links}, started_at=started, ended_at=ended,
        plugin=f.plugin_from(labels),
    )
