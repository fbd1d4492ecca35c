from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations on top of every app: /metrics figures, self-monitoring and watchdog, retention,
    runstack and the demo. Ops may import any app; no app below imports ops (DESIGN 8)."""

    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"
