"""The Celery application: one per process, configured from Django settings (CELERY_*)."""
from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alertcenter.settings")

app = Celery("alertcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Database connections in workers. Celery's Django fixup closes every connection before and after
# each task unless CELERY_DB_REUSE_MAX is set: one new PostgreSQL backend (connect, authenticate,
# fork) per task, which cost a detect worker more than detecting its 1,000-event batch. Workers
# treat connections as Django does between requests instead: kept for CONN_MAX_AGE, dropped when
# obsolete, broken or left outside autocommit (close_old_connections at each task's start and end).
app.conf["CELERY_DB_REUSE_MAX"] = 2**62  # the fixup's count-based recycling: never; age/health below


def _recycle_db_connections(sender=None, **kwargs) -> None:
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # an eager task runs inside its caller's connection and transaction
    from django.db import close_old_connections

    close_old_connections()


signals.task_prerun.connect(_recycle_db_connections, weak=False)
signals.task_postrun.connect(_recycle_db_connections, weak=False)
