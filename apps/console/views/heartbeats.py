"""Heartbeats page: every visible tenant's heartbeats with state, last ping and next due time.

Read-only (pings come from the jobs themselves; delete through the API). Tenant members see
only their tenants' heartbeats, as everywhere in the console.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core import clock
from apps.core.vocabulary import format_duration
from apps.ingest.heartbeats import selectors

from ..access import console_view

PAGE_LIMIT = 1000


@console_view
def heartbeat_list(request: HttpRequest) -> HttpResponse:
    now = clock.now()
    rows = [{"hb": hb, "state": selectors.display_state(hb, now), "timeout": format_duration(hb.timeout_seconds),
             "grace": format_duration(hb.grace_seconds)}
            for hb in selectors.heartbeats(tenant_ids=request.viewer.tenant_ids)[:PAGE_LIMIT]]
    return render(request, "console/heartbeats.html", {"rows": rows, "now": now, "limit": PAGE_LIMIT})
