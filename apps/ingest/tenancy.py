"""Per-process lookups of tenant and plugin ids by slug, for the intake and the detect worker.

Every request and every batch needs them, and they almost never change, so they are cached in
the process: the tenant map as ``apps.tenants.active`` keeps it (a slug it lacks is looked up
again at most twice a second), plugin ids for the life of the process (plugins are only ever
added). ``clear_caches()`` drops both (tests; a stale id after a tenant was deleted and
re-created shows up as an IntegrityError, and the caller clears and retries).
"""
from __future__ import annotations

import threading
from typing import Iterable, NamedTuple

from django.conf import settings
from django.db import transaction

from apps.core import on_commit
from apps.tenants import active
from apps.tenants.models import PluginCount, Tenant
from apps.tenants.fastpath import insert_plugins, plugin_ids_of_pairs

_lock = threading.Lock()
_plugins: dict[tuple[int, str], int] = {}

# The tenant lookups live with the tenants (the detect engine needs them too).
tenant_map = active.tenant_ids
tenant_id = active.tenant_id


def clear_caches() -> None:
    active.clear()
    with _lock:
        _plugins.clear()


def plugin_ids(pairs: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """(tenant id, plugin slug) -> Plugin id, registering plugins seen for the first time
    (``register_plugins``)."""
    known = register_plugins(pairs)
    return {p: _plugins.get(p) or known[p] for p in pairs if p in _plugins or p in known}


def register_plugins(pairs: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Register the plugins of ``pairs`` (tenant id, plugin slug) seen for the first time; the ids
    this transaction registered (not yet in the process cache), for ``plugin_ids``.

    Runs in the caller's transaction. Plugins not in the process cache are read (one query), and
    only those not found are inserted. Concurrent workers may register the same plugin at once:
    the unique constraint picks one row, and ``insert_plugins`` returns its id to both.
    Plugins this transaction registered are not registered (or read) again by its later calls:
    a detect batch asks for its plugins up to three times (intake, engine, storage).
    """
    here: dict[tuple[int, str], int] = {}
    for registered in on_commit.pending(_Registered):  # this transaction's, still standing
        here.update(registered.found)
    unknown = [p for p in pairs if p not in _plugins and p not in here]
    found: dict[tuple[int, str], int] = {}
    if unknown:
        # Most were registered already (intake registers a batch's plugins when it stores it):
        # read those, insert only the rest.
        found = plugin_ids_of_pairs(unknown)
        # Sorted: two workers registering overlapping sets insert in one order, so they queue on
        # the unique index instead of deadlocking.
        missing = sorted(p for p in unknown if p not in found)
        if missing:
            found.update(insert_plugins(missing))
        # Cached once committed: a rolled-back registration must not leave ids of rows that
        # never came to be (alerts would fail on their foreign key, again and again, and stored
        # events, which have no constraint, would point at nothing).
        transaction.on_commit(_Registered(found))
    return {**here, **found} if found else here


class _Registered:
    """Plugin ids registered by the current transaction: they join the process cache on commit.
    Until then this on_commit callback is where later calls in the transaction find them; a
    rollback (of the transaction, or of the savepoint that registered them) drops it with the rows
    (``apps.core.on_commit``)."""

    def __init__(self, found: dict[tuple[int, str], int]) -> None:
        self.found = found

    def __call__(self) -> None:
        _remember(self.found)


def _remember(found: dict[tuple[int, str], int]) -> None:
    with _lock:
        _plugins.update(found)


class PluginLimit(NamedTuple):
    """A tenant's plugin limit and where it comes from (for the rejection message)."""

    value: int
    source: str  # "TENANT_MAX_PLUGINS" or "max_plugins of the tenant"


def admit_plugins(pairs: Iterable[tuple[int, str]]) -> dict[tuple[int, str], PluginLimit]:
    """Register the unseen plugins of ``pairs`` (tenant id, slug) up to each tenant's plugin limit
    and return the refused ones, each with the limit it hit. Known plugins are never refused.

    The first unseen plugins (in the order of ``pairs``) get the free places. Runs in the caller's
    transaction, the one that stores the batch, so plugins are registered with their events or
    not at all. Exact under concurrency: the tenants' rows are locked while their plugins are
    counted and inserted, so two requests register one after the other and cannot overshoot the
    limit together. FOR NO KEY UPDATE: inserting events or alerts of the tenant (KEY SHARE on the
    row) is not blocked. Cost: nothing when every plugin is in the process cache, one query when
    some are not, and the lock, the read of the tenants' ``PluginCount`` (kept by triggers, so the
    same cost at 10 plugins as at 100,000) and the insert only when a plugin is really new.
    """
    unseen = [p for p in dict.fromkeys(pairs) if p not in _plugins]
    if not unseen:
        return {}
    found = plugin_ids_of_pairs(unseen)
    transaction.on_commit(lambda: _remember(found))
    new = [p for p in unseen if p not in found]
    if not new:
        return {}
    tenant_ids = sorted({t for t, _ in new})
    limits = {pk: PluginLimit(own, "max_plugins of the tenant") if own is not None
              else PluginLimit(settings.TENANT_MAX_PLUGINS, "TENANT_MAX_PLUGINS")
              for pk, own in Tenant.objects.select_for_update(no_key=True).filter(pk__in=tenant_ids)
              .order_by("pk").values_list("pk", "max_plugins")}
    room = {t: lim.value for t, lim in limits.items()}
    # The triggers' count, not a count of the plugins: one row per tenant however many it has.
    for t, n in PluginCount.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", "n"):
        room[t] -= n
    # A request that held the lock before us may have registered some of them: known, not new.
    registered_meanwhile = plugin_ids_of_pairs(new)
    admitted, refused = [], {}
    for p in new:
        if p in registered_meanwhile:
            continue
        if p[0] in room:  # a tenant row gone since it was cached: the insert fails, the caller retries
            if room[p[0]] <= 0:
                refused[p] = limits[p[0]]
                continue
            room[p[0]] -= 1
        admitted.append(p)
    if admitted:
        # Sorted: inserts in one order on the unique index (see plugin_ids).
        # Into ``found``: its on_commit above adds them to the process cache with the rest.
        found.update(insert_plugins(sorted(admitted)))
    return refused

