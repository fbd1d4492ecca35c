"""The intake service: validate, mask and durably store one batch of log events.

``accept_body`` (the API) and ``accept_events`` (``replay_logs``, the API after parsing) are
the only writers of ``IngestBatch``. Contract: either one batch row holding every accepted
event is committed and ``detect_batch`` is rung on commit, or nothing is stored at all.

Failure policy (each an ``ApplicationError`` the API renders as its status code):
  * ``PayloadTooLarge`` (413) over INGEST_MAX_BYTES or INGEST_MAX_EVENTS;
  * ``Unprocessable`` (422) for a body that can never be valid (shippers drop it);
  * ``QuotaExceeded`` (429, ``Retry-After``) over the tenant's quota;
  * ``ServiceUnavailable`` (503, ``Retry-After``) when the database is down or the masking
    rules cannot be loaded: masking fails closed, we never store unmasked data;
  * ``PayloadTooLarge`` (413) too when masking the body needs more CPU than
    INGEST_MASKING_BUDGET_MS (checked as it goes, so a hostile body stops early; nothing stored).
A single invalid event is not an error: it is reported as ``{"index": i, "error": "field:
message"}`` and the others are accepted. So is an event of a plugin new to its tenant once the
tenant has reached its plugin limit (``TENANT_MAX_PLUGINS``, or ``Tenant.max_plugins``): plugins
are registered here, with the batch, so the limit holds exactly (``tenancy.admit_plugins``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from rest_framework import status

from apps.core import clock
from apps.core.errors import ApplicationError, ServiceUnavailable, Unprocessable
from apps.core.gc_pause import gc_paused

from . import backpressure, quota, tenancy
from .codec import encode_events
from .fastpath import insert_batch
from .masking import Masker, MaskingBudgetExceeded, MaskingRuleError, get_masker
from .models import IngestBatch
from .normalize import BodyError, Event, EventError, normalize_event, parse_body

logger = logging.getLogger(__name__)

# Seconds a shipper should wait before resending after a 503.
UNAVAILABLE_RETRY_AFTER = 5


class PayloadTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "too_large"


class QuotaExceeded(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "rate_limited"


@dataclass(frozen=True, slots=True)
class Writer:
    """Who writes: the token (for the batch row) and the tenant it is bound to (None: platform)."""

    token_id: int | None
    tenant_slug: str | None


@dataclass(slots=True)
class IntakeResult:
    accepted: int
    rejected: list[dict] = field(default_factory=list)
    batch_id: int | None = None

    def as_dict(self) -> dict:
        return {"accepted": self.accepted, "rejected": self.rejected, "batch_id": self.batch_id}


def _unavailable(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(message, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})


def check_size(size: int) -> None:
    """Raise ``PayloadTooLarge`` when a body of ``size`` bytes is over INGEST_MAX_BYTES."""
    if size > settings.INGEST_MAX_BYTES:
        raise PayloadTooLarge(
            f"body is {size} bytes; the limit is {settings.INGEST_MAX_BYTES} bytes: send smaller batches",
            details={"max_bytes": settings.INGEST_MAX_BYTES})


def accept_body(*, raw: bytes, content_type: str, writer: Writer) -> IntakeResult:
    """Parse a request body (JSON array, ``{"events": [...]}`` or NDJSON) and accept its events."""
    check_size(len(raw))
    with gc_paused():  # bounded: INGEST_MAX_BYTES
        try:
            items = parse_body(raw, content_type)
        except BodyError as exc:
            raise Unprocessable(str(exc), code="invalid_body") from None
        return accept_events(items=items, writer=writer)


def accept_events(*, items: list[object], writer: Writer) -> IntakeResult:
    """Validate, mask and store ``items`` (parsed events) as one batch; see the module docstring."""
    if len(items) > settings.INGEST_MAX_EVENTS:
        raise PayloadTooLarge(
            f"{len(items)} events in one request; the limit is {settings.INGEST_MAX_EVENTS}: send smaller batches",
            details={"max_events": settings.INGEST_MAX_EVENTS})
    try:
        backlog_wait = backpressure.retry_after_if_backlogged()
    except (OperationalError, InterfaceError):
        raise _unavailable("database unavailable; resend later") from None
    if backlog_wait is not None:
        raise QuotaExceeded(
            f"detection is behind (more than {settings.INGEST_MAX_PENDING_EVENTS} events pending); resend later",
            code="backlogged", details={"retry_after": backlog_wait}, headers={"Retry-After": str(backlog_wait)})
    if writer.tenant_slug:
        # Cheap early refusal before spending CPU on the events of an exhausted tenant.
        wait = quota.retry_after_if_exhausted(writer.tenant_slug)
        if wait is not None:
            raise _quota_error(writer.tenant_slug, wait)
    try:
        masker = get_masker(settings.MASKING_RULES_FILE)
    except MaskingRuleError as exc:
        logger.error("masking rules unavailable; refusing logs", extra={"error": str(exc)})
        raise _unavailable("masking rules cannot be loaded; logs are refused rather than stored unmasked") from None

    try:
        return _accept(items, writer, masker)
    except IntegrityError:
        # A tenant id cached in this process went stale (tenant deleted and re-created): reload.
        tenancy.clear_caches()
        try:
            return _accept(items, writer, masker)
        except (OperationalError, InterfaceError):
            raise _unavailable("database unavailable; resend later") from None
    except (OperationalError, InterfaceError):
        raise _unavailable("database unavailable; resend later") from None


def _accept(items: list[object], writer: Writer, masker) -> IntakeResult:
    now = clock.now()
    max_past = timedelta(seconds=settings.INGEST_MAX_PAST_SECONDS)
    max_future = timedelta(seconds=settings.INGEST_MAX_FUTURE_SECONDS)
    default_tenant = writer.tenant_slug
    tenants = tenancy.tenant_map()
    accepted: list[Event] = []
    positions: list[int] = []  # each accepted event's index in the body
    rejected: list[dict] = []
    per_tenant: dict[str, int] = {}
    for i, item in enumerate(items):
        try:
            event = normalize_event(item, now=now, max_past=max_past, max_future=max_future,
                                    default_tenant=default_tenant)
        except EventError as exc:
            rejected.append({"index": i, "error": str(exc)})
            continue
        slug = event.tenant_id
        if slug not in tenants and tenancy.tenant_id(slug) is None:
            rejected.append({"index": i, "error": f"tenant_id: unknown tenant {slug!r}"})
            continue
        accepted.append(event)
        positions.append(i)
        per_tenant[slug] = per_tenant.get(slug, 0) + 1
    accepted = _masked(masker, accepted)

    if not accepted:
        return _nothing_accepted(default_tenant, rejected)
    wait = quota.consume(per_tenant)
    if wait is not None:
        over = max(per_tenant, key=per_tenant.get)
        raise _quota_error(over, wait)

    consumed = dict(per_tenant)
    try:
        with transaction.atomic():
            accepted, refused = _drop_new_plugins_over_limit(accepted, positions, rejected)
            if not accepted:
                quota.refund(consumed)
                return _nothing_accepted(default_tenant, rejected)
            per_tenant = {slug: n - refused.get(slug, 0) for slug, n in per_tenant.items() if n > refused.get(slug, 0)}
            only_tenant = next(iter(per_tenant)) if len(per_tenant) == 1 else None
            batch = insert_batch(IngestBatch(
                tenant_id=tenancy.tenant_id(only_tenant) if only_tenant else None,
                token_id=writer.token_id, received_at=now, event_count=len(accepted),
                rejected_count=len(rejected), payload=encode_events(accepted),
            ))
            transaction.on_commit(lambda: _ring(batch.pk))
    except Exception:
        quota.refund(consumed)
        raise
    if refused:
        quota.refund(refused)  # only accepted events count against the quota
    result = IntakeResult(accepted=len(accepted), rejected=rejected, batch_id=batch.pk)
    logger.info("ingest: batch accepted", extra={
        "tenant_id": only_tenant or ",".join(sorted(per_tenant)), "batch_id": batch.pk,
        "accepted": len(accepted), "rejected": len(rejected)})
    return result


def _nothing_accepted(tenant: str | None, rejected: list[dict]) -> IntakeResult:
    logger.info("ingest: nothing accepted", extra={"tenant_id": tenant, "accepted": 0, "rejected": len(rejected)})
    return IntakeResult(accepted=0, rejected=rejected)


def _drop_new_plugins_over_limit(events: list[Event], positions: list[int],
                                 rejected: list[dict]) -> tuple[list[Event], dict[str, int]]:
    """Register the events' new plugins within their tenants' plugin limits; the events of a
    plugin refused are moved to ``rejected`` (kept in index order). Returns the kept events and
    the number dropped per tenant slug. Runs in the batch's transaction (see tenancy.admit_plugins)."""
    ids = {slug: tenancy.tenant_id(slug) for slug in {e.tenant_id for e in events}}
    refused = tenancy.admit_plugins((ids[e.tenant_id], e.plugin_id) for e in events if ids[e.tenant_id])
    if not refused:
        return events, {}
    kept: list[Event] = []
    dropped: dict[str, int] = {}
    for event, index in zip(events, positions):
        limit = refused.get((ids[event.tenant_id], event.plugin_id))
        if limit is None:
            kept.append(event)
            continue
        rejected.append({"index": index, "error": (
            f"plugin_id: tenant {event.tenant_id!r} has reached its limit of {limit.value} plugins ({limit.source}); "
            f"new plugin {event.plugin_id!r} refused (events of its known plugins are accepted; "
            f"remove unused plugins or raise the limit)")})
        dropped[event.tenant_id] = dropped.get(event.tenant_id, 0) + 1
    rejected.sort(key=lambda r: r["index"])
    return kept, dropped


def _masked(masker: Masker, events: list[Event]) -> list[Event]:
    # Masked before the quota is charged, so its CPU is bounded on its own (the budget).
    try:
        return masker.mask_events(events, budget_ms=settings.INGEST_MASKING_BUDGET_MS)
    except MaskingBudgetExceeded as exc:
        logger.warning("ingest: masking over its CPU budget; body refused", extra={
            "budget_ms": exc.budget_ms, "spent_ms": round(exc.spent_ms), "events": len(events)})
        raise PayloadTooLarge(
            f"masking this body needed more than the {exc.budget_ms} ms CPU budget "
            f"(INGEST_MASKING_BUDGET_MS) after {exc.events_done} of {len(events)} events: "
            f"send smaller batches", details={"masking_budget_ms": exc.budget_ms}) from None


def _quota_error(tenant: str, wait: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"tenant {tenant!r} is over its intake quota of {settings.INGEST_TENANT_EVENTS_PER_SECOND} "
        f"events/s; resend after {wait} s",
        details={"tenant_id": tenant, "retry_after": wait}, headers={"Retry-After": str(wait)})


def _ring(batch_id: int) -> None:
    # The broker is only a doorbell: if it is down the batch is safe in the database and the
    # sweeper enqueues it later, so a failed publish must not turn a 202 into a 500.
    from .tasks import detect_batch

    try:
        detect_batch.delay(batch_id)
    except Exception:
        logger.warning("ingest: could not enqueue batch; the sweeper will", extra={"batch_id": batch_id},
                       exc_info=True)
