"""Shared by management commands: ``--since 24h`` (the one duration spelling) as a command error."""
from __future__ import annotations

from datetime import timedelta

from django.core.management.base import CommandError

from apps.core.vocabulary import parse_period


def parse_since(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d', '1h30m' -> timedelta; CommandError naming the value otherwise."""
    try:
        return parse_period(text)
    except ValueError as exc:
        raise CommandError(f"--since: {exc}") from None
