"""The active tenants, cached in the process: every intake request and every detect batch needs
them, and they almost never change.

The cache is reloaded every ``TTL`` seconds, and sooner (at most every ``MISS_RELOAD_INTERVAL``)
when a caller asks for a slug it lacks: a tenant created or switched on just now is found at
once, while one switched off or deleted is still seen for up to ``TTL`` (at once in the process
that made the change: ``on_tenant_changed``). A write that then fails on a stale id (an
IntegrityError: the tenant was deleted, or deleted and re-created) is the caller's cue to
``clear()`` and retry.

The rows are shared by every caller in the process: read them, never change or save them, and
never read a reverse relation on them (``tenant.ticket_bridge`` and the like would cache itself
on the shared row).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from django.db import transaction

from .models import Tenant

TTL = 5.0
# A slug missing from the cache triggers a reload at most this often (unknown-tenant spam must
# not turn into one query per request).
MISS_RELOAD_INTERVAL = 0.5

_monotonic = time.monotonic  # tests move this one, not the process's clock
_lock = threading.Lock()
_rows: dict[str, Tenant] = {}
_ids: dict[str, int] = {}
_by_pk: dict[int, Tenant] = {}
_loaded_at = float("-inf")


def clear() -> None:
    """Make the next lookup read the tenants afresh. The maps are left in place, not emptied, so a
    thread in the middle of a lookup keeps a whole (if old) view."""
    global _loaded_at
    with _lock:
        _loaded_at = float("-inf")


def _load() -> None:
    global _rows, _ids, _by_pk, _loaded_at
    rows = {t.slug: t for t in Tenant.objects.filter(active=True).order_by()}
    ids = {slug: t.pk for slug, t in rows.items()}
    by_pk = {t.pk: t for t in rows.values()}
    with _lock:
        _rows, _ids, _by_pk, _loaded_at = rows, ids, by_pk, _monotonic()


def _fresh(wanted: Iterable[str] = (), wanted_pks: Iterable[int] = ()) -> None:
    age = _monotonic() - _loaded_at
    if age > TTL or (age > MISS_RELOAD_INTERVAL and (any(slug not in _ids for slug in wanted)
                                                      or any(pk not in _by_pk for pk in wanted_pks))):
        _load()


def tenants(wanted: Iterable[str] = ()) -> dict[str, Tenant]:
    """slug -> row of every active tenant (one query every ``TTL`` seconds at most, or sooner when
    a slug of ``wanted`` is missing)."""
    _fresh(wanted)
    return _rows


def tenant_ids(wanted: Iterable[str] = ()) -> dict[str, int]:
    """slug -> id of every active tenant (as ``tenants``)."""
    _fresh(wanted)
    return _ids


def tenant_id(slug: str) -> int | None:
    """The id of active tenant ``slug``, or None."""
    return tenant_ids((slug,)).get(slug)


def tenant(pk: int) -> Tenant | None:
    """The row of active tenant ``pk``, or None (as ``tenants``, looked up by id)."""
    _fresh(wanted_pks=(pk,))
    return _by_pk.get(pk)


def on_tenant_changed(sender, **kwargs) -> None:
    """post_save / post_delete of a Tenant (connected in ``TenantsConfig.ready``): read afresh now,
    for this transaction's own reads, and again once it commits, in case another thread of this
    process read the old rows meanwhile."""
    clear()
    transaction.on_commit(clear)
