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
