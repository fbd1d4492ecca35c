from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest

from apps.alerts.models import Alert
from apps.rules.demo import load_demo
from apps.rules.engine import detect
from apps.rules.models import LogRule, RuleOverride

from .conftest import T0, burst

pytestmark = pytest.mark.django_db


def test_demo_rules_are_idempotent_and_fire_quickly(tenant):
    out = StringIO()
    load_demo(out)
    assert "created 5" in out.getvalue()
    load_demo(out)
    assert "unchanged 5" in out.getvalue() and RuleOverride.objects.count() == 1
    assert LogRule.objects.filter(enabled=True).count() == 5
    r = detect(burst(5, level="ERROR"), received_at=T0 + timedelta(seconds=5))
    assert r.alerts_fired == 1 and Alert.objects.get().rule_key == "plugin-error-burst"
