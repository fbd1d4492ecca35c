"""Endpoint signing secrets: encrypted at rest, both secrets active during a rotation overlap."""
from __future__ import annotations

from datetime import datetime

from django.conf import settings

from . import crypto
from .models import WebhookEndpoint


def seal(secret: str) -> str:
    """Encrypt a secret for storage with ``FIELD_ENCRYPTION_KEYS``."""
    return crypto.encrypt(secret, settings.FIELD_ENCRYPTION_KEYS)


def active_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """Secrets that sign a request now, newest first (the previous one until its overlap ends).

    Raises ``crypto.CryptoError`` when the stored secret cannot be decrypted (wrong keys).
    """
    keys = settings.FIELD_ENCRYPTION_KEYS
    out = [crypto.decrypt(endpoint.secret_encrypted, keys)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > now:
        out.append(crypto.decrypt(endpoint.previous_secret_encrypted, keys))
    return out
