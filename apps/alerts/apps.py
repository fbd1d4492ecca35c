from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "apps.alerts"
    label = "alerts"

    def ready(self) -> None:
        from apps.delivery import feedback

        from .delivery_feedback import apply

        # The one way delivery reports back: keeps Alert.delivery_state in step with the deliveries.
        feedback.connect(apply)
