"""What the current transaction will do on commit.

An ``on_commit`` callback that is still registered is the proof that the work which registered it
is still part of the transaction: rolling back a savepoint or the transaction discards its
callbacks without running them. So a callback object can carry state for the rest of its
transaction (the outbox's doorbell collects the ids rung; plugin registration remembers the ids it
inserted) without ever outliving a rollback.
"""
from __future__ import annotations

from typing import TypeVar

from django.db import transaction

T = TypeVar("T")


def pending(kind: type[T]) -> list[T]:
    """The callbacks of class ``kind`` the current transaction will run on commit, oldest first;
    none outside a transaction."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return []
    return [entry[1] for entry in connection.run_on_commit if isinstance(entry[1], kind)]  # (sids, func, robust)


def pending_here(kind: type[T]) -> T | None:
    """The newest callback of class ``kind`` registered at the current savepoint level, or None.

    Only such a callback may collect more work of this level: one registered in an outer level
    would keep, after a rollback of the current savepoint, what that rollback undid; one registered
    in an inner savepoint would lose, with a rollback of it, what this level still does."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        return None
    here = set(connection.savepoint_ids)
    for sids, func, _robust in reversed(connection.run_on_commit):
        if isinstance(func, kind) and sids == here:
            return func
    return None
