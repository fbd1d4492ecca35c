"""``{% stream_url %}`` and ``{% stream_head %}`` for the console pages that follow the stream."""
from __future__ import annotations

from django import template
from django.conf import settings

from .. import selectors

register = template.Library()


@register.simple_tag
def stream_url() -> str:
    """Where the console's EventSource connects (STREAM_PUBLIC_URL; empty: the console polls)."""
    return settings.STREAM_PUBLIC_URL


@register.simple_tag
def stream_head() -> int:
    """The newest event id as the page is rendered: the stream starts after it, so nothing that
    happens between rendering and connecting is missed."""
    return selectors.head()
