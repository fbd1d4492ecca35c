"""Metric rule evaluation, rung by beat (CELERY_BEAT_SCHEDULE "rules-evaluate-metrics"). Safe to run
twice at once: each rule is claimed by a conditional UPDATE inside ``evaluate_due``."""
from __future__ import annotations

import logging

from celery import shared_task

from . import metric_eval

log = logging.getLogger(__name__)


@shared_task(name="rules.evaluate_metrics", ignore_result=True)
def evaluate_metrics() -> int:
    """Evaluate every metric rule that is due."""
    done = metric_eval.evaluate_due()
    if done:
        log.info("metric rules evaluated", extra={"count": done})
    return done
