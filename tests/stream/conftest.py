from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

from tests.alerts.conftest import fire_kwargs  # noqa: F401  (re-used by test_hooks)


@pytest.fixture(scope="session", autouse=True)
def private_stream_channel():
    """Redis pub/sub is server-wide: other runs on this Redis must not ring (or hear) ours."""
    with override_settings(STREAM_REDIS_CHANNEL=f"alertcenter:events:test:{uuid.uuid4().hex[:10]}"):
        yield
