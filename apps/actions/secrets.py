"""Tracker tokens and action signing secrets: sealed with FIELD_ENCRYPTION_KEYS, opened only to send."""
from __future__ import annotations

from django.conf import settings

from apps.delivery import crypto
from apps.delivery.secrets import seal  # noqa: F401  (part of this module's API)


def unseal(token: str) -> str:
    """Decrypt a stored secret; ``crypto.CryptoError`` naming the cause when the keys do not fit."""
    return crypto.decrypt(token, settings.FIELD_ENCRYPTION_KEYS) if token else ""
