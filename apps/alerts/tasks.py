"""Periodic sweepers (scheduled by beat, see CELERY_BEAT_SCHEDULE). Each is idempotent and safe to
run twice at once: every alert is claimed by a conditional UPDATE inside the service."""
from __future__ import annotations

import logging

from celery import shared_task

from . import services

log = logging.getLogger(__name__)


@shared_task(name="alerts.escalate", ignore_result=True)
def escalate() -> int:
    """Escalate unacknowledged alerts whose policy step is due."""
    done = services.escalate_due()
    if done:
        log.info("alerts escalated", extra={"count": done})
    return done


@shared_task(name="alerts.auto_resolve", ignore_result=True)
def auto_resolve() -> int:
    """Resolve alerts whose group has been quiet for the rule's auto_resolve time."""
    done = services.auto_resolve_due()
    if done:
        log.info("alerts auto-resolved", extra={"count": done})
    return done


@shared_task(name="alerts.unsuppress", ignore_result=True)
def unsuppress() -> int:
    """Unsuppress alerts whose suppression time or silence is over."""
    done = services.unsuppress_due()
    if done:
        log.info("alerts unsuppressed", extra={"count": done})
    return done
