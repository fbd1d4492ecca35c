"""The ops commands under their old names: load_demo (every app's demo loader, idempotent) and
system_checks (the watchdog from cron). purge_expired: test_retention.py."""
from __future__ import annotations

from datetime import timedelta
from io import StringIO
from ipaddress import ip_network

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from apps.alerts.models import Alert
from apps.delivery.models import WebhookEndpoint
from apps.ops.demo import DEMO_LOGIN, DEMO_TENANTS
from apps.rules.models import LogRule, RuleOverride
from apps.tenants.models import Plugin, Tenant

from .factories import make_batch

pytestmark = pytest.mark.django_db


def run(name: str, *args: str) -> str:
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def test_load_demo_loads_every_app_and_is_idempotent(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.WEBHOOK_ALLOW_HTTP = True
    first = run("load_demo", "--simulator-port", "8123")
    assert "demo data ready: 3 tenants, 5 plugins" in first
    assert set(Tenant.objects.values_list("slug", flat=True)) == {"platform", *DEMO_TENANTS}
    assert Plugin.objects.filter(tenant__slug="acme").count() == len(DEMO_TENANTS["acme"][1])
    assert LogRule.objects.filter(enabled=True).exists() and RuleOverride.objects.count() == 1
    assert sorted(WebhookEndpoint.objects.values_list("url", flat=True)) == [
        "http://127.0.0.1:8123/acme", "http://127.0.0.1:8123/globex"]
    assert get_user_model().objects.get(username=DEMO_LOGIN[0]).check_password(DEMO_LOGIN[1])

    counts = (Tenant.objects.count(), Plugin.objects.count(), LogRule.objects.count(), WebhookEndpoint.objects.count())
    second = run("load_demo", "--simulator-port", "8123")
    assert "unchanged" in second and "webhook for" not in second
    assert counts == (Tenant.objects.count(), Plugin.objects.count(), LogRule.objects.count(),
                      WebhookEndpoint.objects.count())


def test_system_checks_command_raises_the_watchdog_alert_once(tenant):
    make_batch(tenant, accepted=1, status="PENDING", age=timedelta(minutes=10))
    first = run("system_checks")
    assert "pipeline=alert #" in first and "heartbeat=alert #" in first
    second = run("system_checks")
    assert first == second  # deduplicated by fingerprint: the same alerts absorb the new run
    assert Alert.objects.filter(rule_key="system.pipeline-stuck").count() == 1


def test_purge_expired_refuses_a_bad_chunk_size():
    with pytest.raises(CommandError, match="--chunk-size must be a positive integer"):
        run("purge_expired", "--chunk-size", "0")
