from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """Last sign of life of each Celery worker, written by the ``core.heartbeat`` task.

    It proves the whole loop (beat -> broker -> worker -> database) works, which is what the
    health endpoint and the watchdog need to know.
    """

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"


class MetricRollup(models.Model):
    """Counter totals folded in from rows that retention deleted (see apps.ops.retention).

    The /metrics collector derives counters from rows at scrape time; when ``purge_expired``
    deletes rows it adds their counts here in the same transaction, so ``rows + rollup`` never
    goes down. ``labels`` is the canonical label string (``tenant=acme``), "" for none.
    """

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=200, blank=True, default="")
    value = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "labels"], name="metric_rollup_unique")]

    def __str__(self) -> str:
        return f"{self.name}{{{self.labels}}} = {self.value}"


class MetricFold(models.Model):
    """How far a counter fold has gone (apps.ops.folds): rows of its table with ``id <= folded_to``
    are counted in ``MetricRollup`` rows named ``fold:<name>:...``, the rest are counted at scrape
    time. ``candidates`` are [unix time, max id] pairs seen at earlier folds: a fold only goes up to an
    id that was already allocated METRICS_FOLD_DELAY_SECONDS ago, so rows of transactions still open
    are never skipped."""

    name = models.CharField(max_length=50, unique=True)
    folded_to = models.BigIntegerField(default=0)
    candidates = models.JSONField(default=list)
    # The unix time of the newest candidate at or below ``folded_to``: every row past the fold was
    # written after it, or in a transaction open then. None until a fold goes to a candidate.
    folded_at = models.FloatField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} folded to id {self.folded_to}"
