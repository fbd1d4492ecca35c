from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "apps.delivery"
    label = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # Connect the outbox to alert_event: deliveries are written in the alert's transaction.
        from . import receivers  # noqa: F401
