from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "apps.alerts"
    label = "alerts"

    def ready(self) -> None:
        from . import delivery_state  # noqa: F401  (keeps Alert.delivery_state in step with deliveries)
