from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apps.delivery.signing import new_secret, sign, verify_powerx

BODY = b'{"type":"alert.triggered","data":{"id":"a1","title":"caf\xc3\xa9"}}'


def test_new_secret_format():
    s = new_secret()
    assert s.startswith("whsec_")
    raw = base64.b64decode(s[len("whsec_"):], validate=True)
    assert 24 <= len(raw) <= 32
    assert new_secret() != s


def test_standard_webhooks_library_verifies_our_headers():
    secret = new_secret()
    ts = int(time.time())
    headers = sign(body=BODY, msg_id="msg_1", timestamp=ts, secrets=[secret])
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(ts)
    assert headers["webhook-signature"].startswith("v1,")
    Webhook(secret).verify(BODY, headers)  # raises on mismatch


def test_rotation_both_secrets_verify_and_others_do_not():
    new, old = new_secret(), new_secret()
    headers = sign(body=BODY, msg_id="msg_2", timestamp=int(time.time()), secrets=[new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(BODY + b" ", headers)


def test_powerx_signature_is_plain_hmac_of_body_keyed_by_secret_string():
    secret = new_secret()
    headers = sign(body=BODY, msg_id="m", timestamp=1700000000, secrets=[secret])
    expected = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers["X-PowerX-Signature"] == f"sha256={expected}"
    assert headers["X-PowerX-Timestamp"] == "1700000000"
    assert verify_powerx(BODY, headers["X-PowerX-Signature"], secret)
    assert not verify_powerx(BODY + b"x", headers["X-PowerX-Signature"], secret)
    assert not verify_powerx(BODY, headers["X-PowerX-Signature"], new_secret())


def test_powerx_rotation_lists_both_newest_first():
    new, old = new_secret(), new_secret()
    header = sign(body=BODY, msg_id="m", timestamp=1, secrets=[new, old])["X-PowerX-Signature"]
    first, second = header.split(",")
    assert first == "sha256=" + hmac.new(new.encode(), BODY, hashlib.sha256).hexdigest()
    assert second == "sha256=" + hmac.new(old.encode(), BODY, hashlib.sha256).hexdigest()
    assert verify_powerx(BODY, header, new) and verify_powerx(BODY, header, old)


@pytest.mark.parametrize("header", [None, "", "garbage", "sha256=", "md5=abc"])
def test_verify_powerx_rejects_malformed(header):
    assert not verify_powerx(BODY, header, new_secret())


def test_standard_signature_recomputed_by_hand():
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    sig = sign(body=b"{}", msg_id="id1", timestamp=42, secrets=[secret])["webhook-signature"]
    mac = hmac.new(b"k" * 32, b"id1.42.{}", hashlib.sha256).digest()
    assert sig == "v1," + base64.b64encode(mac).decode()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"secrets": []}, "at least one secret"),
        ({"secrets": ["whsec_!!!notbase64"]}, "not valid base64"),
        ({"secrets": ["whsec_"]}, "empty"),
        ({"msg_id": ""}, "message id"),
        ({"msg_id": "a b"}, "message id"),
    ],
)
def test_sign_rejects_bad_input(kwargs, match):
    args = {"body": b"{}", "msg_id": "m", "timestamp": 1, "secrets": [new_secret()]} | kwargs
    with pytest.raises(ValueError, match=match):
        sign(**args)
