from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.test import override_settings

from apps.ingest import tenancy
from apps.rules import engine


@pytest.fixture(autouse=True)
def _reliability_settings():
    # Endpoints on the local receiver pass the SSRF check in this process (the worker gets the
    # same through peer_env); per-process caches must not leak ids between tests.
    tenancy.clear_caches()
    engine.reset_cache()
    with override_settings(WEBHOOK_ALLOWED_NETWORKS=[ip_network("127.0.0.0/8")]):
        yield
    tenancy.clear_caches()
    engine.reset_cache()
