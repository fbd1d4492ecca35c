"""Reading the stream table (blocking ORM calls; the async side runs them in threads through
``fresh``)."""
from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from django.db import close_old_connections
from django.db.models import Max, Q

from .models import StreamEvent

T = TypeVar("T")


def fresh(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on this thread's connection after dropping it if broken or past CONN_MAX_AGE:
    the stream's threads live outside requests, where Django would do that."""
    return fn(*args, **kwargs)


def head() -> int:
    """The newest event id (0 when there is none): where a fresh client starts."""
    return StreamEvent.objects.aggregate(m=Max("id"))["m"] or 0


def committed_after(hwm: int, late: Collection[int], *, limit: int) -> list[StreamEvent]:
    """Rows with id > ``hwm`` or among ``late``, in id order, at most ``limit``."""
    wanted = Q(id__gt=hwm) | Q(id__in=list(late)) if late else Q(id__gt=hwm)
    return list(StreamEvent.objects.filter(wanted).order_by("id")[:limit])


def replay(after: int, upto: int, tenant_ids: Collection[int] | None, *, limit: int) -> list[StreamEvent]:
    """A client's missed events: ``after`` < id <= ``upto`` of its tenants, in id order, at most ``limit``."""
    qs = StreamEvent.objects.filter(id__gt=after, id__lte=upto)
    if tenant_ids is not None:
        qs = qs.filter(tenant_id__in=list(tenant_ids))
    return list(qs.order_by("id")[:limit])
