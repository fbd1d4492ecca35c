"""Writes of the reports app: issuing download links and serving a download, each audited."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.alerts.models import Alert
from apps.audit.services import record

from . import diagnostics, links
from .links import LinkClaim


@dataclass(frozen=True)
class ReportLinks:
    ndjson_url: str
    zip_url: str
    expires_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {"ndjson_url": self.ndjson_url, "zip_url": self.zip_url, "expires_at": self.expires_at.isoformat()}


def issue_report_links(*, alert: Alert, actor: Any, ip: str | None,
                       url_for: Callable[[str, str], str]) -> ReportLinks:
    """Sign links to ``alert``'s report (the caller has checked it may see the alert) and audit
    who asked. ``url_for(name, token)`` builds an absolute URL for "download-ndjson"/"download-zip"."""
    token, expires_at = links.issue(tenant_id=alert.tenant_id, alert_id=alert.pk)
    record("report.link_created", actor=actor, target=alert, tenant=alert.tenant_id,
           data={"expires_at": expires_at.isoformat()}, ip=ip or None)
    return ReportLinks(ndjson_url=url_for("download-ndjson", token), zip_url=url_for("download-zip", token),
                       expires_at=expires_at)


def download(*, alert: Alert, claim: LinkClaim, fmt: str, ip: str | None) -> bytes:
    """The rendered report for a verified link, with the ``report.downloaded`` audit row."""
    report, body = diagnostics.generate(alert, fmt)
    record("report.downloaded", actor="signed link", target=alert, tenant=alert.tenant_id, ip=ip or None,
           data={"format": fmt, "lines": len(report.lines), "masking_violations": report.violation_total,
                 "issued_at": claim.issued_at.isoformat() if claim.issued_at else None,
                 "expires_at": claim.expires_at.isoformat()})
    return body
