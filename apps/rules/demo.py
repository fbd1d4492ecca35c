"""Demo rules for ``manage.py load_demo``: the default pack, tuned so the demo fires quickly."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

from apps.rules.models import RuleOverride
from apps.rules.packs import read_pack_dir
from apps.rules.services import override_set, rules_sync
from apps.tenants.models import Tenant

PACK_DIR = Path(settings.BASE_DIR) / "fixtures" / "log_rules"
# 5 errors in a minute instead of 20 in 5 minutes: a demo burst alerts at once, and re-alerts soon.
DEMO_OVERRIDE = {"threshold": {"count": 5, "window": "1m"}, "cooldown": "1m"}


def load_demo(stdout, **options) -> None:
    """Sync fixtures/log_rules and give the demo tenant "acme" a quick error-burst override (idempotent)."""
    pack = read_pack_dir(PACK_DIR)
    report = rules_sync(specs=pack.specs, sources=pack.sources, actor="load_demo", disable_missing=pack.source_prefix)
    acme = Tenant.objects.filter(slug="acme").first()
    if acme and not RuleOverride.objects.filter(rule__key="plugin-error-burst", tenant=acme).exists():
        override_set(key="plugin-error-burst", tenant=acme, body=DEMO_OVERRIDE, actor="load_demo")
    stdout.write(f"rules: {report.summary()} (acme: plugin-error-burst at 5 errors/1m)")
