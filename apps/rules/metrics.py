"""Metric samples in: parse (JSON or Prometheus text), validate per sample, roll up per
(series, minute) in memory, and store with one upsert per table (README "Metrics and metric rules").

Contract of ``parse_samples``: a body that can never be valid (empty, not JSON / not exposition text,
not a list of samples) raises ``MetricsBodyError``; every other problem is a per-sample rejection
``{"index", "error"}`` naming the field. NaN and +-Inf values are rejected per sample: a rollup's
sum and sigma would be poisoned by one of them (an exporter's NaN means "no observation").

Contract of ``store_samples``: runs in its own transaction; samples of series new to the tenant are
admitted while the tenant has fewer than METRICS_MAX_SERIES_PER_TENANT series (exact under
concurrency: the tenant row is locked while new series are counted and created); the others are
rejected per sample naming the limit. Storage is bounded by series x minutes, not by samples.

Speed (bench/metrics.py, issue 14): a series' label checks and digest are memoised per process
(pure functions of the name and labels), and each process keeps the tenant's series ids in a
bounded LRU (``SERIES_IDS``), so a request of known series skips the series lookup and sends one
upsert. Entries are added only after the transaction that read or created them commits (a
rolled-back id never enters); a series that disappeared under an id the request used (cached, its
tenant deleted; or read just before ``purge_expired`` deleted it, apps.rules.retention) fails the
rollup's foreign key when the transaction commits (the constraint is deferred), and the request is
redone once from the database. Inside a caller's transaction that check, and so the
failure, comes at the caller's commit. The cyclic GC is held off while a body is parsed and rolled up.
"""
from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.dateparse import parse_datetime

from apps.core.gc_pause import gc_paused
from apps.core.vocabulary import epoch_seconds, format_duration
from apps.rules import fastpath
from apps.rules.metric_spec import LABEL_NAME_RE, METRIC_NAME_RE
from apps.rules.models import MetricSeries
from apps.tenants.models import Tenant

MAX_LABELS = 30
MAX_LABEL_VALUE_CHARS = 200
PROMETHEUS_CONTENT_TYPES = ("text/plain", "application/openmetrics-text")
SAMPLE_FIELDS = frozenset({"name", "labels", "value", "ts"})
MEMO_SIZE = 50_000  # distinct (name, labels) whose checks and digest are memoised per process (~35 MB full)


class MetricsBodyError(ValueError):
    """The body as a whole cannot be read (HTTP 422: do not resend)."""


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 us more per sample
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


class SeriesIdCache:
    """(tenant id, labels_hash) -> series id, least recently used dropped beyond ``size``.
    Thread-safe (gunicorn threads); a process's entries only, never shared."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: OrderedDict[tuple[int, str], int] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, tenant_id: int, hashes: Iterable[str]) -> dict[str, int]:
        found = {}
        with self._lock:
            for h in hashes:
                sid = self._ids.get((tenant_id, h))
                if sid is not None:
                    self._ids.move_to_end((tenant_id, h))
                    found[h] = sid
        return found

    def put_many(self, tenant_id: int, ids: dict[str, int]) -> None:
        with self._lock:
            for h, sid in ids.items():
                self._ids[(tenant_id, h)] = sid
                self._ids.move_to_end((tenant_id, h))
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)

    def forget_tenant(self, tenant_id: int) -> None:
        with self._lock:
            for key in [k for k in self._ids if k[0] == tenant_id]:
                del self._ids[key]

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()

    def __len__(self) -> int:
        return len(self._ids)


SERIES_IDS = SeriesIdCache(size=100_000)  # ~15 MB full: ten tenants at the default series limit


@functools.lru_cache(maxsize=MEMO_SIZE)
def series_hash(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    """Digest of a metric name and its sorted labels: a series' identity within a tenant."""
    return hashlib.blake2b(orjson.dumps([name, labels]), digest_size=16).hexdigest()


def parse_samples(raw: bytes, content_type: str, *, now: float) -> tuple[list[Sample], list[dict]]:
    """(valid samples, rejections) of a request body; raises ``MetricsBodyError``."""
    with gc_paused():
        return _parse_samples(raw, content_type, now=now)


def _parse_samples(raw: bytes, content_type: str, *, now: float) -> tuple[list[Sample], list[dict]]:
    if not raw.strip():  # as /logs: 422, or a shipper would resend nothing forever ("accepted": 0 is success)
        raise MetricsBodyError("empty body: send a JSON array of samples or Prometheus text")
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
    except OverflowError:  # the parser divides a timestamp's integer milliseconds by 1000
        raise MetricsBodyError("not valid Prometheus text exposition format: a timestamp too large for a float "
                               "(milliseconds since the epoch expected)") from None


def _sample(index: int, item: Any, *, now: float, oldest: float, newest: float) -> Sample:
    if not isinstance(item, dict):
        raise ValueError(f"sample must be an object with name, labels, value, ts; got {type(item).__name__}")
    if not SAMPLE_FIELDS.issuperset(item):
        unknown = set(item) - SAMPLE_FIELDS
        raise ValueError(f"{sorted(unknown)[0]}: unknown field (known: name, labels, value, ts)")
    name = item.get("name")
    labels = item.get("labels") or {}
    if not isinstance(labels, dict):
        _check_name(name)
        raise ValueError(f"labels: must be an object of strings, got {type(labels).__name__}")
    items = tuple(labels.items())
    try:
        sorted_labels = _checked_series(name, items)
    except TypeError:  # an unhashable name or label value: checked uncached, and refused there
        sorted_labels = _checked_series.__wrapped__(name, items)
    value = item.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"value: must be a number, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer past a float's range: Prometheus text can carry one
        raise ValueError(f"value: an integer of {value.bit_length()} bits is too large for a float "
                         "(rollups need finite floats)") from None
    if not finite:
        raise ValueError(f"value: {value} is not stored (NaN and +-Inf are rejected: rollups need finite values)")
    ts = _timestamp(item.get("ts"), now)
    if not oldest <= ts <= newest:
        raise _out_of_range(item.get("ts"), ts)
    return Sample(index, name, sorted_labels, float(value), ts)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not METRIC_NAME_RE.fullmatch(name):
        raise ValueError(f"name: invalid metric name {name!r} (Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]*, "
                         "at most 200 characters)")


@functools.lru_cache(maxsize=MEMO_SIZE)
def _checked_series(name: Any, items: tuple) -> tuple[tuple[str, str], ...]:
    """The sorted labels of a valid (name, label items); raises ValueError naming the first
    problem. Memoised: an exporter sends the same series at every scrape (refusals are not cached)."""
    _check_name(name)
    labels = dict(items)
    if len(labels) > MAX_LABELS:
        raise ValueError(f"labels: {len(labels)} labels, at most {MAX_LABELS} allowed")
    for key, text in labels.items():
        if not LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
            raise ValueError(f"labels: invalid label name {key!r}")
        if not isinstance(text, str):
            raise ValueError(f"labels.{key}: must be a string, got {type(text).__name__}")
        if len(text) > MAX_LABEL_VALUE_CHARS:
            raise ValueError(f"labels.{key}: longer than {MAX_LABEL_VALUE_CHARS} characters")
    return tuple(sorted(items))


def _timestamp(value: Any, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, bool):
        raise ValueError(f"ts: must be epoch seconds/milliseconds or an RFC 3339 string, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"ts: must be finite, got {value!r}")
        return float(epoch_seconds(value))
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None or parsed.tzinfo is None:
            raise ValueError(f"ts: {value!r} is not an RFC 3339 timestamp with a time zone")
        return parsed.timestamp()
    raise ValueError(f"ts: must be epoch seconds/milliseconds or an RFC 3339 string, got {type(value).__name__}")


def _out_of_range(value: Any, ts: float) -> ValueError:
    """The rejection of a ``ts`` (as sent: ``value``) outside INGEST_MAX_PAST/FUTURE_SECONDS."""
    shown = repr(value[:64] if isinstance(value, str) else value)
    if not isinstance(value, str):
        try:  # the instant a number was read as (its unit told by its magnitude)
            shown += f" ({datetime.fromtimestamp(ts, timezone.utc).isoformat()})"
        except (OverflowError, OSError, ValueError):
            pass  # no date before year 1 or past 9999 (1e20 ns is the year 5138, 1e308 has none)
    past, future = settings.INGEST_MAX_PAST_SECONDS, settings.INGEST_MAX_FUTURE_SECONDS
    return ValueError(f"ts: {shown} is outside the accepted range: {format_duration(past)} in the past to "
                      f"{format_duration(future)} in the future (INGEST_MAX_PAST_SECONDS / INGEST_MAX_FUTURE_SECONDS)")


def rollup(samples: list[Sample], hashes: list[str] | None = None) -> dict[tuple[str, int], list]:
    """Aggregate samples per (series hash, minute epoch): [count, sum, min, max, sumsq, last, last_ts].
    ``hashes``: the samples' ``series_hash``es, when the caller has them already."""
    if hashes is None:
        hashes = [series_hash(s.name, s.labels) for s in samples]
    out: dict[tuple[str, int], list] = {}
    for s, h in zip(samples, hashes):
        value, ts = s.value, s.ts
        key = (h, int(ts // 60) * 60)
        acc = out.get(key)
        if acc is None:
            out[key] = [1, value, value, value, value * value, value, ts]
            continue
        acc[0] += 1
        acc[1] += value
        if value < acc[2]:
            acc[2] = value
        if value > acc[3]:
            acc[3] = value
        acc[4] += value * value
        if ts >= acc[6]:
            acc[5], acc[6] = value, ts
    return out


def store_samples(*, tenant_id: int, samples: list[Sample], now: datetime) -> StoreResult:
    """Admit the samples' series (within the tenant's limit) and upsert their minute rollups."""
    if not samples:
        return StoreResult()
    hash_of = [series_hash(s.name, s.labels) for s in samples]
    first_of: dict[str, Sample] = {}
    for s, h in zip(samples, hash_of):
        first_of.setdefault(h, s)
    cached = SERIES_IDS.get_many(tenant_id, first_of)
    try:
        return _store(tenant_id, samples, hash_of, first_of, cached, now)
    except IntegrityError:
        # A series gone under an id this request used (the only foreign key of a rollup): a cached
        # id (its tenant deleted), or one read while purge_expired deleted the series (it had
        # stopped sending; apps.rules.retention). Forget the tenant's ids and redo it from the database.
        SERIES_IDS.forget_tenant(tenant_id)
        return _store(tenant_id, samples, hash_of, first_of, {}, now)


def _store(tenant_id: int, samples: list[Sample], hash_of: list[str], first_of: dict[str, Sample],
           cached: dict[str, int], now: datetime) -> StoreResult:
    result = StoreResult()
    with transaction.atomic():
        ids = dict(cached)
        unknown = [h for h in first_of if h not in ids]
        if unknown:
            ids.update(MetricSeries.objects.filter(tenant_id=tenant_id, labels_hash__in=unknown)
                       .values_list("labels_hash", "id"))
        new = [h for h in unknown if h not in ids]
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
        kept, kept_hashes = samples, hash_of
        if refused:
            kept, kept_hashes = [], []
            for s, h in zip(samples, hash_of):
                if h in refused:
                    result.rejected.append({"index": s.index, "error": (
                        f"series {s.name}{dict(s.labels)}: tenant has reached its limit of "
                        f"{settings.METRICS_MAX_SERIES_PER_TENANT} series (METRICS_MAX_SERIES_PER_TENANT); new series "
                        "refused (samples of known series are accepted)")})
                else:
                    kept.append(s)
                    kept_hashes.append(h)
        with gc_paused():
            rows = rollup(kept, kept_hashes)
        fastpath.upsert_rollups([(ids[h], minute, *acc) for (h, minute), acc in rows.items()])
        if len(cached) < len(ids):
            learned = {h: sid for h, sid in ids.items() if h not in cached}
            transaction.on_commit(lambda: SERIES_IDS.put_many(tenant_id, learned))
    result.accepted = len(kept)
    return result
