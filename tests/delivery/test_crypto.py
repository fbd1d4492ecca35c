from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from apps.delivery.crypto import CryptoError, decrypt, decrypt_cached, encrypt, rotate

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ=="


def test_round_trip_with_fernet_key():
    key = Fernet.generate_key().decode()
    token = encrypt(SECRET, [key])
    assert token != SECRET and SECRET not in token
    assert decrypt(token, [key]) == SECRET
    assert Fernet(key).decrypt(token.encode()).decode() == SECRET  # used as is, not derived


def test_round_trip_with_arbitrary_string_key_is_deterministic():
    token = encrypt("héllo", ["django-insecure-some SECRET_KEY!"])
    assert decrypt(token, ["django-insecure-some SECRET_KEY!"]) == "héllo"


def test_rotation_first_encrypts_all_decrypt():
    old, new = "old key string", Fernet.generate_key().decode()
    old_token = encrypt(SECRET, [old])
    assert decrypt(old_token, [new, old]) == SECRET
    new_token = encrypt(SECRET, [new, old])
    assert decrypt(new_token, [new]) == SECRET
    with pytest.raises(CryptoError):
        decrypt(new_token, [old])
    rotated = rotate(old_token, [new, old])
    assert decrypt(rotated, [new]) == SECRET


def test_wrong_key_fails_with_clear_message():
    token = encrypt(SECRET, ["key one"])
    with pytest.raises(CryptoError, match=r"not encrypted with any of the 1 configured key\(s\)"):
        decrypt(token, ["key two"])


@pytest.mark.parametrize("token", ["", "garbage", "gAAAA" + "x" * 50, "ünïcode"])
def test_corrupt_token_fails(token):
    with pytest.raises(CryptoError, match="cannot decrypt"):
        decrypt(token, ["k"])


def test_no_or_empty_keys():
    with pytest.raises(CryptoError, match="no encryption keys"):
        encrypt("x", [])
    with pytest.raises(CryptoError, match="empty"):
        encrypt("x", [""])


def test_decrypt_cached_opens_what_decrypt_opens_and_never_remembers_a_failure():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = encrypt("whsec_cached", [old])
    with pytest.raises(CryptoError):
        decrypt_cached(token, (new,))  # not under this key ...
    assert decrypt_cached(token, (new, old)) == decrypt(token, [new, old]) == "whsec_cached"
    with pytest.raises(CryptoError):
        decrypt_cached(token, (new,))  # ... and still not, though the token was opened meanwhile
