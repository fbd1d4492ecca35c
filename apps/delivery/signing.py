"""Webhook request signing: Standard Webhooks plus the legacy ``X-PowerX-*`` headers.

Contract (DESIGN.md section 4):

* ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``: Standard Webhooks. The signature is
  ``v1,<base64 HMAC-SHA256>`` over ``f"{id}.{timestamp}.{body}"``; the HMAC key is the base64-decoded
  part of the secret after ``whsec_``. With several active secrets (rotation) there is one
  space-separated ``v1,...`` entry per secret, which every Standard Webhooks library accepts.
* ``X-PowerX-Timestamp: <unix s>`` and ``X-PowerX-Signature: sha256=<hex>``: hex HMAC-SHA256 of the raw
  body keyed with the *whole* secret string (``whsec_...``) as UTF-8. With several secrets the header is
  a comma-separated list ``sha256=<new>,sha256=<old>`` in the order the secrets were given (newest
  first), so outside rotation it is a single value a receiver can compare as a string, and during
  rotation the receiver accepts the request when any entry matches (``verify_powerx`` does that).

``X-PowerX-Alert-ID`` is added by the caller. Failure policy: a malformed secret raises ``ValueError``
naming the problem (never signs with a wrong key silently).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets

SECRET_PREFIX = "whsec_"
_SECRET_BYTES = 32


def new_secret() -> str:
    """Return a fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def _standard_key(secret: str) -> bytes:
    """Decode the HMAC key of a ``whsec_`` secret exactly as the standardwebhooks library does."""
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    raw = raw.rstrip("=")
    if not raw:
        raise ValueError("webhook secret is empty")
    try:
        # The library accepts unpadded secrets (it appends "=="); re-pad so strict decoding agrees.
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"webhook secret is not valid base64 after '{SECRET_PREFIX}': {exc}") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def powerx_signature(body: bytes, secret: str) -> str:
    """Return ``sha256=<hex HMAC-SHA256(body)>`` keyed with the secret string as UTF-8."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign(*, body: bytes, msg_id: str, timestamp: int, secrets: list[str]) -> dict[str, str]:
    """Return the signature headers for one request.

    ``secrets`` are the active secrets, newest first; all of them sign (rotation overlap).
    ``msg_id`` must be stable across retries: receivers use it as the idempotency key.
    Raises ``ValueError`` when no secret is given or a secret is malformed.
    """
    if not secrets:
        raise ValueError("cannot sign a webhook without at least one secret")
    if not msg_id or any(c.isspace() for c in msg_id):
        # Whitespace would corrupt the header value; an empty id gives receivers no idempotency key.
        raise ValueError(f"invalid webhook message id {msg_id!r}")
    ts = str(int(timestamp))
    signed = f"{msg_id}.{ts}.".encode() + body
    standard = []
    for secret in secrets:
        mac = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
        standard.append("v1," + base64.b64encode(mac).decode("ascii"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": " ".join(standard),
        "X-PowerX-Timestamp": ts,
        "X-PowerX-Signature": ",".join(powerx_signature(body, s) for s in secrets),
    }


def verify_powerx(body: bytes, header: str | None, secret: str) -> bool:
    """True when any ``sha256=<hex>`` entry of ``header`` matches ``body`` under ``secret``.

    Every entry is compared in constant time and the loop never short-circuits, so timing reveals
    neither the expected digest nor which entry matched. A missing or malformed header is ``False``.
    """
    if not header:
        return False
    expected = powerx_signature(body, secret).encode("ascii")
    ok = False
    for entry in header.split(","):
        candidate = entry.strip().encode("utf-8", "replace")
        ok |= hmac.compare_digest(candidate, expected)
    return ok
