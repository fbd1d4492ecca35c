from django.apps import AppConfig


class StreamConfig(AppConfig):
    """The live event stream (DESIGN 11): every alert/delivery change appends a StreamEvent row in
    its transaction and rings Redis on commit; the ``stream`` process (uvicorn) serves them as
    server-sent events at GET /api/v1/stream. Below alerts and delivery: imports core/tenants only."""

    name = "apps.stream"
    label = "stream"
    verbose_name = "Live stream"
