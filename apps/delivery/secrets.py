"""Secrets at rest: endpoint signing secrets (both active during a rotation overlap) and the secret
parts of configured channels (routing keys, API keys, chat webhook URLs), Fernet-encrypted."""
from __future__ import annotations

from datetime import datetime

import orjson
from django.conf import settings

from . import crypto
from .models import NotificationChannel, WebhookEndpoint


def seal(secret: str) -> str:
    """Encrypt a secret for storage with ``FIELD_ENCRYPTION_KEYS``."""
    return crypto.encrypt(secret, settings.FIELD_ENCRYPTION_KEYS)


def active_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """Secrets that sign a request now, newest first (the previous one until its overlap ends).

    Raises ``crypto.CryptoError`` when the stored secret cannot be decrypted (wrong keys).
    """
    keys = tuple(settings.FIELD_ENCRYPTION_KEYS)
    out = [crypto.decrypt_cached(endpoint.secret_encrypted, keys)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted and expires and expires > now:
        out.append(crypto.decrypt_cached(endpoint.previous_secret_encrypted, keys))
    return out


def seal_channel_secrets(values: dict[str, str]) -> str:
    """Encrypt a channel's secret config values (one token for the JSON object; "" for none)."""
    return seal(orjson.dumps(values).decode()) if values else ""


def channel_secrets(channel: NotificationChannel) -> dict[str, str]:
    """A channel's decrypted secret config; ``crypto.CryptoError`` when the keys cannot open it."""
    if not channel.secrets_encrypted:
        return {}
    return orjson.loads(crypto.decrypt(channel.secrets_encrypted, settings.FIELD_ENCRYPTION_KEYS))
