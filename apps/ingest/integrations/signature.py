"""Grafana's webhook HMAC (grafana/alerting http/hmac.go): pure functions, no database.

signature = hex(HMAC-SHA256(secret, body)), or over ``timestamp + ":" + body`` when the contact
point sets a timestamp header (unix seconds). Compared in constant time.
"""
from __future__ import annotations

import hashlib
import hmac


class SignatureError(ValueError):
    """The request's signature is missing, malformed, stale or wrong; ``str()`` says which."""


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    message = f"{timestamp}:".encode() + body if timestamp is not None else body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(*, secret: str, body: bytes, signature: str | None, header: str, timestamp: str | None = None,
           timestamp_header: str = "", now: float, max_skew: int) -> None:
    """Raise ``SignatureError`` unless ``signature`` signs ``body`` (and ``timestamp``) with ``secret``.

    With a ``timestamp_header`` the timestamp must be present and within ``max_skew`` seconds of
    ``now``: without that check a captured request could be replayed forever.
    """
    if not signature:
        raise SignatureError(f"missing {header} header: this tenant's Grafana webhooks must be signed")
    if timestamp_header:
        stamp = (timestamp or "").strip()
        # ASCII digits only: str.isdigit() passes '²', which int() refuses.
        if not (stamp.isascii() and stamp.isdigit()):
            raise SignatureError(f"missing or malformed {timestamp_header} header (unix seconds expected)")
        # Over 15 digits is far from any clock, and int() refuses over 4300.
        if len(stamp) > 15 or abs(now - int(stamp)) > max_skew:
            raise SignatureError(f"{timestamp_header} is more than {max_skew} s away from our clock")
    expected = sign(secret, body, timestamp.strip() if timestamp_header and timestamp else None)
    given = signature.strip().lower().removeprefix("sha256=")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError(f"{header} does not match the body (check the HMAC secret of the contact point)")
