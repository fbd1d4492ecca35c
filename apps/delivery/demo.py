"""Demo webhooks for ``make run``: one endpoint per demo tenant at the local webhook simulator."""
from __future__ import annotations

from typing import Any

from apps.tenants.models import Tenant

from .models import WebhookEndpoint
from .services import create_endpoint


def load_demo(stdout: Any, *, simulator_port: int = 8001, **options: Any) -> None:
    """Idempotent: an endpoint already registered at the URL is left alone. Prints new secrets once
    (the simulator reads them from the database to verify signatures)."""
    for tenant in Tenant.objects.filter(is_platform=False, slug__in=["acme", "globex"]):
        url = f"http://127.0.0.1:{simulator_port}/{tenant.slug}"
        if WebhookEndpoint.objects.filter(tenant=tenant, url=url).exists():
            continue
        endpoint, secret = create_endpoint(tenant=tenant, url=url, description="demo: local webhook simulator",
                                           actor="load_demo")
        stdout.write(f"webhook for {tenant.slug}: {url} (secret {secret})")
