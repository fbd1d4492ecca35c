"""Filters available in ticket and action body templates (a builtin of ``templating.ENGINE``)."""
from __future__ import annotations

import json
from typing import Any

from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter(name="tojson")
def tojson(value: Any) -> str:
    """``{{ alert|tojson }}`` / ``{{ alert.title|tojson }}``: the value as a JSON literal (quotes included)."""
    return mark_safe(json.dumps(value, default=str, ensure_ascii=False))
