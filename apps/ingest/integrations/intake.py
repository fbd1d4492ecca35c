"""Store one request's inbound entries as one ``IngestBatch`` of its kind, or nothing at all.

The durable hand-off of DESIGN 3.2, shared with the logs: the batch row is committed before the
API answers 202 and ``detect_batch`` is rung on commit; the sweeper re-rings a lost doorbell.

Failure policy (ApplicationError rendered by the API):
  * 422 when no entry of the body is valid (the first error named, all of them in details);
  * 429 (events) or 503 (Alertmanager, Grafana), both with ``Retry-After``, over the tenant's
    intake quota or while detection is backlogged. Alertmanager retries only 5xx and drops any
    other refusal, so for it "come back later" must be a 5xx;
  * 503 when the database is down or the masking rules cannot be loaded: nothing is stored.
Plugins: an entry's new plugin is registered within the tenant's plugin limit
(``tenancy.admit_plugins``). Past the limit an event is rejected (its sender reads per-event
errors); an Alertmanager or Grafana alert is still stored, without a plugin, because its
sender cannot read per-alert errors and dropping an alert is worse than an unattributed one.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from rest_framework import status

from apps.core import clock
from apps.core.errors import ApplicationError, ServiceUnavailable, Unprocessable

from .. import backpressure, quota, tenancy
from ..fastpath import insert_batch
from ..masking import Masker, MaskingRuleError, get_masker
from ..models import BatchKind, IngestBatch
from ..services import UNAVAILABLE_RETRY_AFTER, IntakeResult, QuotaExceeded, _ring
from .entries import Entry, encode_entries

logger = logging.getLogger(__name__)


class WrongTenant(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


def resolve_tenant(*, bound_slug: str | None, requested: str | None) -> tuple[int, str]:
    """(tenant id, slug) a request writes: the token's tenant, or ``?tenant=`` for a platform token.

    403 when a tenant token names another tenant; 422 when a platform token names none or an
    unknown one.
    """
    requested = (requested or "").strip() or None
    if bound_slug:
        if requested and requested != bound_slug:
            raise WrongTenant(f"token is bound to tenant {bound_slug!r}; it cannot write tenant {requested!r}",
                              details={"tenant": requested})
        slug = bound_slug
    elif requested is None:
        raise Unprocessable("tenant: a platform token must name the tenant: add ?tenant=<slug> to the URL",
                            code="missing_tenant", details={"field": "tenant"})
    else:
        slug = requested
    try:
        tenant_id = tenancy.tenant_id(slug)
    except (OperationalError, InterfaceError):
        raise _unavailable("database unavailable; resend later") from None
    if tenant_id is None:
        raise Unprocessable(f"tenant: unknown tenant {slug!r}", code="unknown_tenant", details={"field": "tenant"})
    return tenant_id, slug


def nothing_valid(rejected: list[dict]) -> Unprocessable:
    if not rejected:  # an empty list: nothing to reject, and nothing to store either
        return Unprocessable("the body holds no entries: send at least one", code="invalid_body",
                             details={"rejected": []})
    return Unprocessable(f"no entry of the body is valid; first: {rejected[0]['error']}", code="invalid_body",
                         details={"rejected": rejected[:100]})


def store_entries(*, kind: str, entries: list[Entry], rejected: list[dict], tenant_id: int, tenant_slug: str,
                  token_id: int | None, positions: list[int] | None = None) -> IntakeResult:
    """Mask ``entries`` and store them as one batch of ``kind``; see the module docstring.

    ``positions``: each entry's index in the body (default 0..n-1), for per-entry rejections.
    """
    if not entries:
        raise nothing_valid(rejected)
    positions = positions if positions is not None else list(range(len(entries)))
    shed = status.HTTP_429_TOO_MANY_REQUESTS if kind == BatchKind.EVENTS else status.HTTP_503_SERVICE_UNAVAILABLE
    try:
        backlog_wait = backpressure.retry_after_if_backlogged()
    except (OperationalError, InterfaceError):
        raise _unavailable("database unavailable; resend later") from None
    if backlog_wait is not None:
        raise QuotaExceeded(
            f"detection is behind (more than {settings.INGEST_MAX_PENDING_EVENTS} events pending); resend later",
            code="backlogged", status_code=shed, details={"retry_after": backlog_wait},
            headers={"Retry-After": str(backlog_wait)})
    try:
        masker = get_masker(settings.MASKING_RULES_FILE)
    except MaskingRuleError as exc:
        logger.error("masking rules unavailable; refusing inbound alerts", extra={"error": str(exc)})
        raise _unavailable("masking rules cannot be loaded; refused rather than stored unmasked") from None
    entries = [_masked(masker, e) for e in entries]
    wait = quota.consume({tenant_slug: len(entries)})
    if wait is not None:
        raise QuotaExceeded(
            f"tenant {tenant_slug!r} is over its intake quota of {settings.INGEST_TENANT_EVENTS_PER_SECOND} "
            f"events/s; resend after {wait} s", status_code=shed,
            details={"tenant_id": tenant_slug, "retry_after": wait}, headers={"Retry-After": str(wait)})
    charged = {tenant_slug: len(entries)}
    try:
        result = _store(kind, entries, positions, list(rejected), tenant_id, tenant_slug, token_id)
    except IntegrityError:
        tenancy.clear_caches()  # a stale cached id (tenant deleted and re-created): reload once
        try:
            result = _store(kind, entries, positions, list(rejected), tenant_id, tenant_slug, token_id)
        except Exception:
            quota.refund(charged)
            raise
    except (OperationalError, InterfaceError):
        quota.refund(charged)
        raise _unavailable("database unavailable; resend later") from None
    except Exception:
        quota.refund(charged)
        raise
    if result.accepted < len(entries):
        quota.refund({tenant_slug: len(entries) - result.accepted})
    return result


def _store(kind: str, entries: list[Entry], positions: list[int], rejected: list[dict], tenant_id: int,
           tenant_slug: str, token_id: int | None) -> IntakeResult:
    now = clock.now()
    with transaction.atomic():
        refused = tenancy.admit_plugins((tenant_id, e.plugin) for e in entries if e.plugin)
        kept = []
        for entry, index in zip(entries, positions):
            limit = refused.get((tenant_id, entry.plugin)) if entry.plugin else None
            if limit is None:
                kept.append(entry)
            elif kind == BatchKind.EVENTS:
                rejected.append({"index": index, "error": (
                    f"plugin_id: tenant {tenant_slug!r} has reached its limit of {limit.value} plugins "
                    f"({limit.source}); new plugin {entry.plugin!r} refused")})
            else:
                kept.append(replace(entry, plugin=None))
        rejected.sort(key=lambda r: r["index"])
        if not kept:
            raise nothing_valid(rejected)
        batch = insert_batch(IngestBatch(
            kind=kind, tenant_id=tenant_id, token_id=token_id, received_at=now, event_count=len(kept),
            rejected_count=len(rejected), payload=encode_entries(kept)))
        transaction.on_commit(lambda: _ring(batch.pk))
    logger.info("ingest: inbound batch accepted", extra={
        "tenant_id": tenant_slug, "batch_id": batch.pk, "kind": kind, "accepted": len(kept),
        "rejected": len(rejected)})
    return IntakeResult(accepted=len(kept), rejected=rejected, batch_id=batch.pk)


def _masked(masker: Masker, entry: Entry) -> Entry:
    texts: dict[str, Any] = {"title": entry.title, "summary": entry.summary, "labels": entry.labels,
                             "annotations": entry.annotations}
    masked = masker.mask_value(texts)
    if masked == texts:
        return entry
    return replace(entry, title=masked["title"], summary=masked["summary"], labels=masked["labels"],
                   annotations=masked["annotations"])


def _unavailable(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(message, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})
