"""Grafana unified alerting's webhook contact point (payload ``version`` "1") -> ``Entry`` objects.

Contract (grafana/alerting receivers/webhook/v1): Alertmanager's data (``receiver``, ``status``,
``alerts[]``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``) plus
``version``, ``groupKey``, ``truncatedAlerts``, ``orgId``, ``title``, ``state``, ``message``; each
alert adds ``values`` ({refId: number}), ``valueString``, ``dashboardURL``, ``panelURL``,
``silenceURL``, ``imageURL`` and ``fingerprint``. One entry per alert, keyed by its fingerprint.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from apps.core.events import EventError
from apps.core.vocabulary import AlertSource

from . import alertmanager
from . import entries as f
from .entries import Entry

URL_KEYS = ("generatorURL", "dashboardURL", "panelURL", "silenceURL", "imageURL")


def parse(doc: Any) -> tuple[list[Entry], list[dict]]:
    """(entries, rejected ``{"index", "error"}``); ``EventError`` naming the field for a 422."""
    alerts = alertmanager.envelope(doc)
    for name in ("title", "state", "message"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise EventError(name, f"must be a string, got {f.json_type(doc[name])}")
    external_url = f.text(doc.get("externalURL"), "externalURL", limit=f.MAX_LABEL_VALUE)
    org = doc.get("orgId")
    out, rejected = [], []
    for i, alert in enumerate(alerts):
        try:
            out.append(entry(alert, f"alerts[{i}]", external_url, org))
        except EventError as exc:
            rejected.append({"index": i, "error": str(exc)})
    return out, rejected


def entry(alert: Any, where: str, external_url: str, org: Any) -> Entry:
    base = alertmanager.entry(alert, where, external_url, source=AlertSource.GRAFANA.value,
                              fallback_title="Grafana alert")
    links = {k: f.text(alert.get(k), f"{where}.{k}", limit=f.MAX_LABEL_VALUE) for k in URL_KEYS if alert.get(k)}
    extra: dict[str, Any] = {}
    values = alert.get("values")
    if values is not None:
        if not isinstance(values, dict):
            raise EventError(f"{where}.values", f"must be an object, got {f.json_type(values)}")
        f.check_depth(values, f"{where}.values")
        extra["values"] = values
    if alert.get("valueString"):
        extra["valueString"] = f.text(alert.get("valueString"), f"{where}.valueString")
    if isinstance(org, (int, str)) and not isinstance(org, bool):
        extra["orgId"] = org
    return replace(base, annotations={**base.annotations, **links, **extra}, value=f.one_number(values))
