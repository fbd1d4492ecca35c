"""One row per diagnostic report generated: the source of two /metrics families.

``monitoring_diagnostic_report_seconds`` and ``monitoring_masking_violation_total`` are derived
from these rows at scrape time (apps.ops.figures), like every other product metric: exact
whichever web worker generated the report, and unaffected by process restarts (a prometheus_client
multiprocess counter would lose its history when gunicorn wipes its directory at start).

Tenant and alert are plain ids, not foreign keys: deleting a tenant or an alert must not delete
the rows a counter is summed from (a counter never goes down).
"""
from __future__ import annotations

from django.db import models


class ReportFormat(models.TextChoices):
    PAGE = "page", "Console page"
    NDJSON = "ndjson", "NDJSON download"
    ZIP = "zip", "Zip download"


class ReportRun(models.Model):
    tenant_id = models.BigIntegerField()
    alert_id = models.BigIntegerField()
    at = models.DateTimeField()
    format = models.CharField(max_length=8, choices=ReportFormat.choices)
    seconds = models.FloatField(help_text="Time spent gathering, checking and rendering the report")
    lines = models.PositiveIntegerField(default=0)
    # Secrets the export check found (and masked) that intake masking had let through.
    violations = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"report of alert {self.alert_id} ({self.format}, {self.seconds:.3f} s)"
