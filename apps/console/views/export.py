"""``GET /alerts/export.csv?<the list's filters>``: the filtered alert list as a streamed CSV,
visible alerts only, audited with the filters and the number of rows that left."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from apps.alerts.selectors import alert_list
from apps.audit.services import record
from apps.core import clock
from apps.core.client_ip import client_ip

from .. import selectors
from ..access import console_view
from ..exports import alert_csv_rows
from ..forms import AlertFilterForm


def _audited(rows: Iterator[str], counter: list[int], **audit: Any) -> Iterator[str]:
    # Recorded once the rows have left (or the download broke off: complete=False), so the
    # audit row holds the real count without a COUNT(*) before the first byte.
    complete = False
    try:
        yield from rows
        complete = True
    finally:
        audit["data"].update(rows=counter[0], complete=complete)
        record("alerts.exported", **audit)


@require_GET
@console_view
def alert_export(request: HttpRequest) -> StreamingHttpResponse:
    viewer = request.viewer
    form = AlertFilterForm(request.GET, username=request.user.get_username())
    alerts = selectors.sorted_alerts(alert_list(tenant_ids=viewer.tenant_ids, filters=form.to_filters()),
                                     form.sort_key)
    counter = [0]
    rows = alert_csv_rows(alerts, counter=counter,
                          detail_url=request.build_absolute_uri(reverse("console:alert-detail", args=[0])))
    tenant = viewer.tenant_ids[0] if viewer.tenant_ids is not None and len(viewer.tenant_ids) == 1 else None
    body = _audited(rows, counter, actor=request.user, tenant=tenant, ip=client_ip(request) or None,
                    data={"filters": {"state": form.tab, **form.applied()}})
    response = StreamingHttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="alerts-{clock.now():%Y%m%dT%H%M%SZ}.csv"'
    response["Cache-Control"] = "no-store"
    return response
