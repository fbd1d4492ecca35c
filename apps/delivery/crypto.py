"""Encryption of secrets at rest (webhook signing secrets) with Fernet / MultiFernet.

Keys come as a list of strings (``FIELD_ENCRYPTION_KEYS``): the first encrypts, all decrypt, so a key
is rotated by putting the new one first, re-encrypting (``rotate``), then dropping the old one.
A key that is already a valid Fernet key (urlsafe base64 of 32 bytes) is used as is; any other
string (e.g. ``SECRET_KEY``) is stretched with HKDF-SHA256 into one, deterministically, so the same
string always decrypts what it encrypted.

Failure policy: problems raise ``CryptoError`` with a message naming the cause; nothing returns a
partial or empty secret.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Fixed context strings: changing them would make every stored secret undecryptable.
_HKDF_SALT = b"alertcenter.field-encryption"
_HKDF_INFO = b"fernet-key-v1"


class CryptoError(Exception):
    """Encryption or decryption failed; ``str(exc)`` names the problem."""


def _fernet(key: str) -> Fernet:
    if not key:
        raise CryptoError("an encryption key is empty (check FIELD_ENCRYPTION_KEYS)")
    try:
        return Fernet(key)
    except (ValueError, binascii.Error, TypeError):
        pass  # not a Fernet key: derive one
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(
        key.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(raw))


@lru_cache(maxsize=8)
def _multi(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise CryptoError("no encryption keys configured (FIELD_ENCRYPTION_KEYS is empty)")
    return MultiFernet([_fernet(k) for k in keys])


def encrypt(text: str, keys: Sequence[str]) -> str:
    """Encrypt ``text`` with the first key; return an ASCII token."""
    return _multi(tuple(keys)).encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(token: str, keys: Sequence[str]) -> str:
    """Decrypt a token made by ``encrypt`` with any of ``keys``."""
    multi = _multi(tuple(keys))
    try:
        return multi.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise CryptoError(
            f"cannot decrypt secret: it was not encrypted with any of the {len(keys)} configured "
            "key(s) (FIELD_ENCRYPTION_KEYS) or it is corrupted"
        ) from exc


@lru_cache(maxsize=4096)
def decrypt_cached(token: str, keys: tuple[str, ...]) -> str:
    """``decrypt``, remembered per (token, keys): a webhook's signing secret is opened for every
    send, with the same token until it is rotated (a new token) or the keys change (a new key).
    Failures are not remembered. The process holds the keys that open them anyway."""
    return decrypt(token, keys)


def rotate(token: str, keys: Sequence[str]) -> str:
    """Re-encrypt ``token`` under the first key (after a key rotation)."""
    multi = _multi(tuple(keys))
    try:
        return multi.rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise CryptoError("cannot re-encrypt secret: no configured key decrypts it") from exc
