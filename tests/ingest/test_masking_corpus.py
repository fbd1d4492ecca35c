"""Masking by class (issue 12, finding 3): a planted-secret corpus that must be masked 100 %, in
the normalized event and in what is stored, and a look-alike corpus that must stay untouched."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from apps.ingest.masking import get_masker
from apps.ingest.masking_checks import cn_id_ok, iban_ok, luhn_ok
from apps.ingest.models import EventRecord
from apps.ingest.normalize import LEVEL_NUMBERS, Event
from apps.ingest.processing import process_batch
from apps.ingest.services import Writer, accept_events

from .conftest import event

PGP = ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF0kZ7ABCAC2pgpSECRETmaterial\n=pgpX\n"
       "-----END PGP PRIVATE KEY BLOCK-----")
OPENSSH = ("-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUsshSECRET\\n"
           "-----END OPENSSH PRIVATE KEY-----")
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0"
       ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")

# (line, planted secrets): every finding of issue 12 (3) and every detection class.
PLANTED: list[tuple[str, list[str]]] = [
    # secrets named by their key, any case style and language
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ["wJalrXUtnFEMI/K7MDENG"]),
    ("connecting with dbPassword=Zq8-pl0ngWord and retries=3", ["Zq8-pl0ngWord"]),
    ("oauth refresh ok accessToken=at.9f8e7d6c5b4a expires=3600", ["at.9f8e7d6c5b4a"]),
    ('{"clientId": "web", "clientSecret": "cs-77aa88bb99"}', ["cs-77aa88bb99"]),
    ("CLIENT-SECRET: kebab77upper", ["kebab77upper"]),
    ("DB_PASSWORD='single quoted pw'", ["single quoted pw"]),
    ('payload="{\\"apiKey\\":\\"esc4ped-k3y\\"}"', ["esc4ped-k3y"]),
    ("config: {api_key => plainRubyKey99}", ["plainRubyKey99"]),
    ("登录失败 密码=hunter2zh 用户=bob", ["hunter2zh"]),
    ("口令：Secr3tKouLing", ["Secr3tKouLing"]),
    ("用户 支付密码: 246810 已修改", ["246810"]),
    ("Passwort=geheim123 Benutzer=max", ["geheim123"]),
    ("password: correct horse battery staple", ["correct horse battery staple", "horse battery staple"]),
    ("ldap bind passphrase: open sesame please, retrying", ["open sesame please"]),
    ('{"password": ["first-pw-1", "second-pw-2"], "user": "bob"}', ["first-pw-1", "second-pw-2"]),
    ('{"secret": {"inner": "nested-s3cret", "deep": [{"x": "deeper-s3cret"}]}}',
     ["nested-s3cret", "deeper-s3cret"]),
    ("password=password=password=pw1", ["pw1"]),
    # URLs, headers, cookies
    ("fetching https://user:pa/ss@host.example.com/repo", ["pa/ss"]),
    ("redis://:r3d1sPass@cache:6379/0 connected", ["r3d1sPass"]),
    ("send to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX failed",
     ["T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"]),
    ("request Cookie: theme=dark1; sid=9f8e7d6c5b4a; csrftoken=c5rfT0ken", ["9f8e7d6c5b4a", "c5rfT0ken", "dark1"]),
    ("response Set-Cookie: sessionid=38afes7a8x; Path=/; HttpOnly; Secure", ["38afes7a8x"]),
    ("Authorization: Digest username=\"bob\", realm=\"api\", response=\"6629fae49393a05397450978507c4ef1\"",
     ["6629fae49393a05397450978507c4ef1"]),
    ("Proxy-Authorization: Basic Ym9iOnNlY3JldA==", ["Ym9iOnNlY3JldA=="]),
    ("Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1", ["AKIDEXAMPLE/20240501"]),
    ("X-Auth-Token: xat-0a1b2c3d4e5f", ["xat-0a1b2c3d4e5f"]),
    ("upstream replied 401 for Bearer 9f8e7d6c5b4a3f2e1d0c", ["9f8e7d6c5b4a3f2e1d0c"]),
    # vendor token prefixes
    ("boto3 AKIAIOSFODNN7EXAMPLE and session ASIAY34FZKBOKMUTVV7A", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"]),
    ("gh tokens ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 gho_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2",
     ["ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "gho_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"]),
    ("fine-grained github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", ["github_pat_11ABCDEFG0123456789"]),
    ("slack xoxb-1234567890-0987654321-AbCdEfGhIjKl and xoxp-11-22-33-aabbccddee",
     ["xoxb-1234567890-0987654321-AbCdEfGhIjKl", "xoxp-11-22-33-aabbccddee"]),
    ("socket mode xapp-1-A0123456789-1234567890123-abcdef0123456789", ["xapp-1-A0123456789-1234567890123"]),
    ("stripe sk_live_51HxYzAbCdEfGhIjKl rk_live_51AbCdEfGhIjKlMnOp", ["sk_live_51HxYzAbCdEfGhIjKl", "rk_live_51AbCdEfGhIjKlMnOp"]),
    ("webhook secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw rotated", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]),
    ("maps AIzaSyA-1234567890abcdefghijklmnopqrstu quota", ["AIzaSyA-1234567890abcdefghijklmnopqrstu"]),
    ("runner glpat-xY7zAbCdEfGhIjKlMnOp12 registered", ["glpat-xY7zAbCdEfGhIjKlMnOp12"]),
    ("openai sk-proj-AbC123xyz987LMNopqRS and sk-ant-api03-abcdefghijklmnopqrstuv",
     ["sk-proj-AbC123xyz987LMNopqRS", "sk-ant-api03-abcdefghijklmnopqrstuv"]),
    (f"session {JWT} expired", [JWT, JWT.split(".")[2]]),
    ("shipper used ac_3f9a1c2b4d5e_Qm9iIGlzIGEgc2VjcmV0IHRva2Vu", ["ac_3f9a1c2b4d5e_Qm9iIGlzIGEgc2VjcmV0IHRva2Vu"]),
    # private keys, every armour type
    (f"imported {PGP} ok", ["lQOYBF0kZ7ABCAC2pgpSECRETmaterial"]),
    (f"key: {OPENSSH}", ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUsshSECRET"]),
    ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIEcSECRETec\n-----END EC PRIVATE KEY-----", ["MHcCAQEEIEcSECRETec"]),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqSECRETenc", ["MIIFHzBJBgkqSECRETenc"]),
    # cards (Luhn) in any grouping, IBANs (mod 97), Chinese mobiles and resident IDs (checksum)
    ("charge 4111 11 111111 1111 ok", ["4111 11 111111 1111"]),
    ("mc 5555  5555 5555 4444 declined", ["5555  5555 5555 4444"]),
    ("amex 3782-822463-10005 and visa 4111-1111 1111-1111", ["3782-822463-10005", "4111-1111 1111-1111"]),
    ("two cards 4111111111111111 6011000990139424 today", ["4111111111111111", "6011000990139424"]),
    ("card 4111 1111 1111 1111 2024 exp", ["4111 1111 1111 1111"]),
    ("IBAN DE89 3704 0044 0532 0130 00 EUR", ["DE89 3704 0044 0532 0130 00", "3704 0044 0532"]),
    ("to GB82WEST12345698765432 and FR1420041010050500013M02606",
     ["GB82WEST12345698765432", "FR1420041010050500013M02606"]),
    ("手机13812345678 已绑定", ["13812345678"]),
    ("mobile +86 139 1234 5678, alt +8615012345678, 86-18612345678",
     ["139 1234 5678", "15012345678", "18612345678"]),
    ("身份证 11010519491231002X 核验", ["11010519491231002X"]),
    ("id 44030419900307457x and 310115198512121236", ["44030419900307457x", "310115198512121236"]),
    # e-mail and phones
    ("notify <bob.smith+alerts@mail.example.co.uk>", ["bob.smith+alerts@mail.example.co.uk"]),
    ("sms +14155552671 and +44 20 7946 0958 and (415) 555-2671", ["+14155552671", "+44 20 7946 0958", "555-2671"]),
]

# Structured fields: secret-named keys (any style) masked whole, whatever the value.
PLANTED_FIELDS: list[tuple[dict, list[str]]] = [
    ({"credentials": ["svc-user", "hunter2pw"]}, ["hunter2pw", "svc-user"]),
    ({"clientSecret": {"v": "nested-field-s3cret"}}, ["nested-field-s3cret"]),
    ({"dbPassword": "camel-pw-1", "X-Api-Key": "kebab-key-1", "AWS_SECRET_ACCESS_KEY": "upper-1"},
     ["camel-pw-1", "kebab-key-1", "upper-1"]),
    ({"pin": 4711, "password": 123456789}, ["4711", "123456789"]),
    ({"card": 4111111111111111, "amount_paid": 5555555555554444}, ["4111111111111111", "5555555555554444"]),
    ({"mobile": "555 0199 12", "phone": 13800138000, "userMobile": "0171 555 0199"},
     ["555 0199 12", "13800138000", "0171 555 0199"]),
    ({"id_card": "A1234567", "idCardNo": "K98765432", "iban": "NL91ABNA0417164300", "ssn": "078-05-1120"},
     ["A1234567", "K98765432", "NL91ABNA0417164300", "078-05-1120"]),
    ({"headers": {"Cookie": "sid=abc123cookie", "set-cookie": "x=y1y2y3", "Authorization": "Token tk-88"}},
     ["abc123cookie", "y1y2y3", "tk-88"]),
    ({"密码": "zh-field-pw", "手机号": "13912345678"}, ["zh-field-pw", "13912345678"]),
    ({"nested": [{"refresh_token": "rt-000111"}, {"note": "password=inlinepw9"}]}, ["rt-000111", "inlinepw9"]),
]

# Look-alikes that must stay byte-identical.
ORDINARY: list[str] = [
    "request_id=550e8400-e29b-41d4-a716-446655440000 trace 4bf92f3577b34da6a3ce929d0e0e4736",
    "UUID 123E4567-E89B-12D3-A456-426614174000 and 00000000-0000-0000-0000-000000000000",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 commit 3f2a9c1",
    "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU host key",
    "ts=1714564800 ms=1714564800123 us=1714564800123456 ns=1714564800123456789",
    "2024-05-01T12:00:00.123456Z and 2024-05-01 12:00:00,123 +0200 and 20240501T120000Z",
    "order 81723 ORD-2024-000123 invoice INV-20240501-0042 shipment 9400111899223344556677",
    "version 1.2.3 build 20240501123045 python 3.11.9 go1.22.3 v2024.05.01 kernel 6.1.0-18-amd64",
    "client 192.168.1.10:51234 -> 10.0.0.1:443 via 2001:db8::1 and ::ffff:10.1.2.3",
    "password reset email sent",
    "password reset requested for user 42; password policy updated; token expired",
    "bearer authentication failed for realm api",
    "tokens_used=1234 max_tokens=4096 token_count=17 tokenizer=bpe",
    "secret rotation scheduled; 3 secrets rotated; api key list refreshed",
    "cookie banner accepted; set-cookie header missing",
    "processed 1234567 rows in 9876 ms; offset 13456 lag 0",
    "counter 12345678901234567890 wrapped; balance 1500000000 cents",
    "phone verification step 3 of 4; mobile app v5.2.1",
    "range 100-200-3000 bytes; ratio 4111.1111",
    "AB12 is a plan code; NL00 is not an IBAN; DE00123",
    "url https://example.com:8443/path/@alice and https://host:8080/a/b@c",
    "image sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4 pulled",
    "npm install left-pad@1.3.0 react@18.2.0; pip install django==5.2.1",
    "模块启动完成，耗时 152ms，请求 id=7f3a",
]


@pytest.fixture(scope="module")
def masker():
    return get_masker()


def _event(message: str, **fields) -> Event:
    return Event(level="ERROR", level_no=LEVEL_NUMBERS["ERROR"], message=message, tenant_id="acme",
                 plugin_id="auth", ts=datetime(2024, 5, 1, tzinfo=timezone.utc), trace_id="t-1", fields=fields)


def test_the_checksum_helpers():
    assert luhn_ok("4111 11 111111 1111") and not luhn_ok("4111 11 111111 1112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88 3704 0044 0532 0130 00")
    assert not iban_ok("DE89 3704 0044 0532 0130")  # wrong length for Germany
    assert cn_id_ok("11010519491231002X") and cn_id_ok("11010519491231002x")
    assert not cn_id_ok("110105194912310021")


@pytest.mark.parametrize("line,secrets", PLANTED, ids=[f"p{i}" for i in range(len(PLANTED))])
def test_planted_secret_is_masked_in_the_message(masker, line, secrets):
    out = masker.mask_event(_event(line)).message
    assert "[MASKED:" in out, out
    for secret in secrets:
        assert secret not in out, out


@pytest.mark.parametrize("fields,secrets", PLANTED_FIELDS, ids=[f"f{i}" for i in range(len(PLANTED_FIELDS))])
def test_planted_secret_is_masked_in_fields(masker, fields, secrets):
    out = orjson.dumps(masker.mask_event(_event("plain message", **fields)).fields).decode()
    for secret in secrets:
        assert secret not in out, out


def test_field_masking_keeps_names_nulls_and_booleans(masker):
    ev = _event("m", dbPassword=["a", "b"], api_key=None, has_password=True, card=4111111111111111, n=42,
                host="web-1", phone_verified=False)
    assert masker.mask_event(ev).fields == {
        "dbPassword": "[MASKED:password]", "api_key": None, "has_password": True, "card": "[MASKED:card]",
        "n": 42, "host": "web-1", "phone_verified": False}


@pytest.mark.parametrize("line", ORDINARY)
def test_look_alikes_stay_byte_identical(masker, line):
    assert masker.mask_text(line) == line
    ev = _event(line, note=line, n=1714564800123, ratio=0.5, tags=[line])
    assert masker.mask_event(ev) == ev


def test_unchanged_events_are_returned_as_they_are(masker):
    ev = _event("GET /api/cart 200 15ms", host="web-1", duration_ms=15)
    assert masker.mask_event(ev) is ev


@pytest.mark.django_db
def test_nothing_planted_reaches_the_stored_batch_or_event_records(tenant, no_doorbell):
    items = [event(level="ERROR", message=line) for line, _ in PLANTED]
    items += [event(level="ERROR", message="fields", **fields) for fields, _ in PLANTED_FIELDS]
    result = accept_events(items=items, writer=Writer(token_id=None, tenant_slug="acme"))
    assert result.accepted == len(items), result.rejected
    outcome = process_batch(batch_id=result.batch_id)
    assert outcome.stored == len(items)
    records = [orjson.dumps([r.message, r.fields]).decode() for r in EventRecord.objects.all()]
    assert len(records) == len(items) and all("[MASKED:" in r for r in records)
    stored = "\n".join(records)
    planted = [s for _, secrets in PLANTED + PLANTED_FIELDS for s in secrets]
    leaked = [s for s in planted if s in stored or orjson.dumps(s).decode()[1:-1] in stored]
    assert leaked == []
