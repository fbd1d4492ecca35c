"""Metric samples in: parse (JSON or Prometheus text), validate per sample, roll up per
(series, minute) in memory, and store with one upsert per table (README "Metrics and metric rules").

Contract of ``parse_samples``: a body that can never be valid (not JSON / not exposition text, not a
list of samples) raises ``MetricsBodyError``; every other problem is a per-sample rejection
``{"index", "error"}`` naming the field. NaN and +-Inf values are rejected per sample: a rollup's
sum and sigma would be poisoned by one of them (an exporter's NaN means "no observation").

Contract of ``store_samples``: runs in its own transaction; samples of series new to the tenant are
admitted while the tenant has fewer than METRICS_MAX_SERIES_PER_TENANT series (exact under
concurrency: the tenant row is locked while new series are counted and created); the others are
rejected per sample naming the limit. Storage is bounded by series x minutes, not by samples.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils.dateparse import parse_datetime

from apps.rules import fastpath
from apps.rules.metric_spec import LABEL_NAME_RE, METRIC_NAME_RE
from apps.rules.models import MetricSeries
from apps.tenants.models import Tenant

MAX_LABELS = 30
MAX_LABEL_VALUE_CHARS = 200
PROMETHEUS_CONTENT_TYPES = ("text/plain", "application/openmetrics-text")


class MetricsBodyError(ValueError):
    """The body as a whole cannot be read (HTTP 422: do not resend)."""


@dataclass(frozen=True, slots=True)
class Sample:
    index: int
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float
    ts: float  # epoch seconds


@dataclass
class StoreResult:
    accepted: int = 0
    series_created: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def series_hash(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """Digest of a metric name and its sorted labels: a series' identity within a tenant."""
    return hashlib.blake2b(orjson.dumps([name, labels]), digest_size=16).hexdigest()


def parse_samples(raw: bytes, content_type: str, *, now: float) -> tuple[list[Sample], list[dict]]:
    """(valid samples, rejections) of a request body; raises ``MetricsBodyError``."""
    if content_type.split(";")[0].strip().lower() in PROMETHEUS_CONTENT_TYPES:
        items = _prometheus_items(raw)
    else:
        items = _json_items(raw)
    max_past, max_future = settings.INGEST_MAX_PAST_SECONDS, settings.INGEST_MAX_FUTURE_SECONDS
    samples, rejected = [], []
    for i, item in enumerate(items):
        try:
            samples.append(_sample(i, item, now=now, oldest=now - max_past, newest=now + max_future))
        except ValueError as exc:
            rejected.append({"index": i, "error": str(exc)})
    return samples, rejected


def _json_items(raw: bytes) -> list:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MetricsBodyError(f"body is not valid JSON ({exc}); send a JSON array of samples or "
                               "Prometheus text with Content-Type: text/plain; version=0.0.4") from None
    if isinstance(doc, dict) and set(doc) == {"samples"}:
        doc = doc["samples"]
    if not isinstance(doc, list):
        raise MetricsBodyError('body must be a JSON array of samples or {"samples": [...]}')
    return doc


def _prometheus_items(raw: bytes) -> list[dict]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MetricsBodyError("Prometheus text must be UTF-8") from None
    try:
        return [{"name": s.name, "labels": s.labels, "value": s.value, "ts": s.timestamp}
                for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsBodyError(f"not valid Prometheus text exposition format: {exc}") from None


def _sample(index: int, item: Any, *, now: float, oldest: float, newest: float) -> Sample:
    if not isinstance(item, dict):
        raise ValueError(f"sample must be an object with name, labels, value, ts; got {type(item).__name__}")
    unknown = set(item) - {"name", "labels", "value", "ts"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: unknown field (known: name, labels, value, ts)")
    name = item.get("name")
    if not isinstance(name, str) or not METRIC_NAME_RE.fullmatch(name):
        raise ValueError(f"name: invalid metric name {name!r} (Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]*, "
                         "at most 200 characters)")
    labels = item.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError(f"labels: must be an object of strings, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"labels: {len(labels)} labels, at most {MAX_LABELS} allowed")
    for key, text in labels.items():
        if not LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
            raise ValueError(f"labels: invalid label name {key!r}")
        if not isinstance(text, str):
            raise ValueError(f"labels.{key}: must be a string, got {type(text).__name__}")
        if len(text) > MAX_LABEL_VALUE_CHARS:
            raise ValueError(f"labels.{key}: longer than {MAX_LABEL_VALUE_CHARS} characters")
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"value: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"value: {value} is not stored (NaN and +-Inf are rejected: rollups need finite values)")
    ts = _timestamp(item.get("ts"), now)
    if not oldest <= ts <= newest:
        raise ValueError(f"ts: {datetime.fromtimestamp(ts, timezone.utc).isoformat()} is outside the accepted range "
                         "(INGEST_MAX_PAST_SECONDS / INGEST_MAX_FUTURE_SECONDS)")
    return Sample(index, name, tuple(sorted(labels.items())), float(value), ts)


def _timestamp(value: Any, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, bool):
        raise ValueError(f"ts: must be epoch seconds or an RFC 3339 string, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"ts: must be finite, got {value!r}")
        return float(value)
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None or parsed.tzinfo is None:
            raise ValueError(f"ts: {value!r} is not an RFC 3339 timestamp with a time zone")
        return parsed.timestamp()
    raise ValueError(f"ts: must be epoch seconds or an RFC 3339 string, got {type(value).__name__}")


def rollup(samples: list[Sample]) -> dict[tuple[str, int], list]:
    """Aggregate samples per (series hash, minute epoch): [count, sum, min, max, sumsq, last, last_ts]."""
    out: dict[tuple[str, int], list] = {}
    hashes: dict[tuple, str] = {}
    for s in samples:
        key = (s.name, s.labels)
        h = hashes.get(key) or hashes.setdefault(key, series_hash(s.name, s.labels))
        minute = int(s.ts // 60) * 60
        acc = out.get((h, minute))
        if acc is None:
            out[(h, minute)] = [1, s.value, s.value, s.value, s.value * s.value, s.value, s.ts]
            continue
        acc[0] += 1
        acc[1] += s.value
        acc[2] = min(acc[2], s.value)
        acc[3] = max(acc[3], s.value)
        acc[4] += s.value * s.value
        if s.ts >= acc[6]:
            acc[5], acc[6] = s.value, s.ts
    return out


def store_samples(*, tenant_id: int, samples: list[Sample], now: datetime) -> StoreResult:
    """Admit the samples' series (within the tenant's limit) and upsert their minute rollups."""
    result = StoreResult()
    if not samples:
        return result
    first_of: dict[str, Sample] = {}
    hash_of: list[str] = []
    for s in samples:
        h = series_hash(s.name, s.labels)
        hash_of.append(h)
        first_of.setdefault(h, s)
    with transaction.atomic():
        ids = dict(MetricSeries.objects.filter(tenant_id=tenant_id, labels_hash__in=list(first_of))
                   .values_list("labels_hash", "id"))
        new = [h for h in first_of if h not in ids]
        refused: set[str] = set()
        if new:
            limit = settings.METRICS_MAX_SERIES_PER_TENANT
            Tenant.objects.select_for_update().filter(pk=tenant_id).values_list("pk").first()
            ids.update(MetricSeries.objects.filter(tenant_id=tenant_id, labels_hash__in=new)
                       .values_list("labels_hash", "id"))  # created by a concurrent request meanwhile
            new = [h for h in new if h not in ids]
            room = max(0, limit - MetricSeries.objects.filter(tenant_id=tenant_id).count())
            admitted, refused = new[:room], set(new[room:])
            created = fastpath.insert_series(
                tenant_id, [(h, first_of[h].name, dict(first_of[h].labels)) for h in admitted], now)
            ids.update(created)
            result.series_created = len(admitted)
        kept = []
        for s, h in zip(samples, hash_of):
            if h in refused:
                result.rejected.append({"index": s.index, "error": (
                    f"series {s.name}{dict(s.labels)}: tenant has reached its limit of "
                    f"{settings.METRICS_MAX_SERIES_PER_TENANT} series (METRICS_MAX_SERIES_PER_TENANT); new series "
                    "refused (samples of known series are accepted)")})
            else:
                kept.append(s)
        rows = rollup(kept)
        fastpath.upsert_rollups([(ids[h], minute, *acc) for (h, minute), acc in rows.items()])
    result.accepted = len(kept)
    return result
