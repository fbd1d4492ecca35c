"""The one periodic sweep of tickets and remediation (beat ``actions-sweep``). Idempotent and safe to
run twice at once: every ticket and automatic run is claimed before any outside call."""
from __future__ import annotations

import logging

from celery import shared_task

from . import remediation, tickets

log = logging.getLogger(__name__)


@shared_task(name="actions.sweep", ignore_result=True)
def sweep() -> dict[str, int]:
    """Create due tickets, comment/close tickets of resolved alerts, run due automatic actions."""
    done = {"tickets_created": tickets.create_due(), "tickets_resolved": tickets.sync_resolved_due(),
            "actions_run": remediation.auto_run_due()}
    if any(done.values()):
        log.info("actions sweep", extra=done)
    return done
