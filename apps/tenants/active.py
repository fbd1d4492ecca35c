"""The active tenants, cached in the process: every intake request and every detect batch needs
them, and they almost never change.

The cache is reloaded every ``TTL`` seconds, so a tenant created just now may be refused as
unknown for that long, and one switched off (or deleted) is still seen for that long. A write
that then fails on a stale id (an IntegrityError: the tenant was deleted, or deleted and
re-created) is the caller's cue to ``clear()`` and retry.

The rows are shared by every caller in the process: read them, never change or save them.
Tenant has no forward relation, so reading one caches nothing on it.
"""
from __future__ import annotations

import threading
import time

from .models import Tenant

TTL = 5.0
# A slug missing from the cache triggers a reload at most this often (unknown-tenant spam must
# not turn into one query per request).
MISS_RELOAD_INTERVAL = 0.5

_lock = threading.Lock()
_rows: dict[str, Tenant] = {}
_ids: dict[str, int] = {}
_loaded_at = float("-inf")


def clear() -> None:
    global _rows, _ids, _loaded_at
    with _lock:
        _rows, _ids, _loaded_at = {}, {}, float("-inf")


def _load() -> None:
    global _rows, _ids, _loaded_at
    rows = {t.slug: t for t in Tenant.objects.filter(active=True).order_by()}
    ids = {slug: t.pk for slug, t in rows.items()}
    with _lock:
        _rows, _ids, _loaded_at = rows, ids, time.monotonic()


def _fresh() -> None:
    if time.monotonic() - _loaded_at > TTL:
        _load()


def tenants() -> dict[str, Tenant]:
    """slug -> row of every active tenant (one query every ``TTL`` seconds at most)."""
    _fresh()
    return _rows


def tenant_ids() -> dict[str, int]:
    """slug -> id of every active tenant (one query every ``TTL`` seconds at most)."""
    _fresh()
    return _ids


def tenant_id(slug: str) -> int | None:
    """The id of active tenant ``slug``, or None; reloads the cache once on a miss."""
    found = tenant_ids().get(slug)
    if found is None and time.monotonic() - _loaded_at > MISS_RELOAD_INTERVAL:
        _load()
        found = _ids.get(slug)
    return found


def on_tenant_changed(sender, **kwargs) -> None:
    """post_save / post_delete of a Tenant (connected in ``TenantsConfig.ready``)."""
    clear()
