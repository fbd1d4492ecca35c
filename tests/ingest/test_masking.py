from __future__ import annotations

import os
import time
from datetime import datetime, timezone

import pytest
import yaml

from apps.ingest.masking import (
    DEFAULT_RULES_PATH, MaskingRuleError, compile_rules, get_masker, luhn_ok, mask_text,
)
from apps.core.events import Event
from apps.core.vocabulary import LEVEL_NUMBERS

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
       ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GOOGLE = "AIza" + "SyA-1234567890abcdefghijklmnopqrstu"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq98RsDqK\nZmV5aGVyZQ==\n"
       "-----END RSA PRIVATE KEY-----")

# (log line, [(planted secret, kind)]): realistic lines as services and shippers write them.
CORPUS: list[tuple[str, list[tuple[str, str]]]] = [
    ("user=bob password=hunter2 action=login result=ok", [("hunter2", "password")]),
    ('{"user": "bob", "password": "Tr0ub4dor&3", "remember": true}', [("Tr0ub4dor&3", "password")]),
    ("ldap bind passwd: s3cr3tPass for cn=admin", [("s3cr3tPass", "password")]),
    ("exec mysql pwd='correct horse battery' host=db1", [("correct horse battery", "password")]),
    ("env DB_PASSWORD=Sup3rS3cret! loaded from .env", [("Sup3rS3cret!", "password")]),
    ("oauth exchange client_id=web client_secret=abcDEF123456ghi ok", [("abcDEF123456ghi", "password")]),
    ('config dump {"secret": "mysecretvalue123", "debug": false}', [("mysecretvalue123", "password")]),
    ("google callback access_token=ya29.a0AfH6SMBxQ3 expires_in=3599",
     [("ya29.a0AfH6SMBxQ3", "password")]),
    ("rotating refresh_token: 1//0gAbCdEfGhIj scope=email", [("1//0gAbCdEfGhIj", "password")]),
    ("GET /download?file=a.pdf&token=abcdef123456&user=bob 200", [("abcdef123456", "password")]),
    ('body="{\\"password\\":\\"p@ssW0rd9\\"}" status=400', [("p@ssW0rd9", "password")]),
    ("config secret: abc123XYZ loaded", [("abc123XYZ", "password")]),
    ('vault unseal passphrase="open sesame 42"', [("open sesame 42", "password")]),
    ("proxy forwarded Authorization: Bearer abc123def456ghi789 to upstream",
     [("abc123def456ghi789", "bearer")]),
    ('curl -H "Authorization: Bearer sk-proj-AbC123xyz987LMN" https://api.example.com',
     [("sk-proj-AbC123xyz987LMN", "bearer")]),
    ("upstream replied 401 for Bearer 9f8e7d6c5b4a3f2e1d0c", [("9f8e7d6c5b4a3f2e1d0c", "bearer")]),
    (f"decoded header for token {JWT} failed: expired", [(JWT, "jwt")]),
    (f"Cookie: session={JWT}; theme=dark", [(JWT, "jwt")]),
    ("payment client init api_key=AbCdEf0123456789 region=eu", [("AbCdEf0123456789", "api_key")]),
    ('{"apiKey": "k-1234567890abcdef", "endpoint": "/v2"}', [("k-1234567890abcdef", "api_key")]),
    ("request headers X-API-Key: 3f2a9c1e7b5d4a6f Accept: */*", [("3f2a9c1e7b5d4a6f", "api_key")]),
    ("legacy integration apikey: zzTopKey998877 deprecated", [("zzTopKey998877", "api_key")]),
    ("stripe charge failed with key sk_live_51HxYzAbCdEfGhIjKlMnOpQr",
     [("sk_live_51HxYzAbCdEfGhIjKlMnOpQr", "api_key")]),
    ("boto3 using credentials AKIAIOSFODNN7EXAMPLE from env", [("AKIAIOSFODNN7EXAMPLE", "api_key")]),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY set",
     [("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "api_key")]),
    (f"git clone https://github.com/acme/x failed; token {GHP} revoked", [(GHP, "api_key")]),
    ("slack notify via xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx ok",
     [("xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx", "api_key")]),
    (f"maps geocode key={GOOGLE} quota exceeded", [(GOOGLE, "api_key")]),
    ("gitlab runner registered with glpat-xY7zAbCdEfGhIjKlMnOp12", [("glpat-xY7zAbCdEfGhIjKlMnOp12", "api_key")]),
    ("charge ok card=4111 1111 1111 1111 amount=12.00 EUR", [("4111 1111 1111 1111", "card")]),
    ("refund for 5555-5555-5555-4444 issued", [("5555-5555-5555-4444", "card")]),
    ("amex 3782 822463 10005 declined: insufficient funds", [("3782 822463 10005", "card")]),
    ('{"pan": "6011111111111117", "exp": "12/27"}', [("6011111111111117", "card")]),
    ("jcb 3530111333300000 and mc 2223003122003222 tokenized",
     [("3530111333300000", "card"), ("2223003122003222", "card")]),
    ("password reset link sent to alice@example.com", [("alice@example.com", "email")]),
    ("notify <bob.smith+alerts@mail.example.co.uk> about quota",
     [("bob.smith+alerts@mail.example.co.uk", "email")]),
    ("sms sent to +14155552671 status=queued", [("+14155552671", "phone")]),
    ("callback number +44 20 7946 0958 (UK office)", [("+44 20 7946 0958", "phone")]),
    ("customer phone (415) 555-2671 updated", [("(415) 555-2671", "phone")]),
    ("escalate to on-call 415-555-2671 or 1-800-555-0199",
     [("415-555-2671", "phone"), ("1-800-555-0199", "phone")]),
    ("whatsapp +49 151 23456789 opted in", [("+49 151 23456789", "phone")]),
    ('{"event":"signup","phone":"+1 212 555 0143","plan":"pro"}', [("+1 212 555 0143", "phone")]),
    ("connecting to postgres://admin:pa55w0rd@db.internal:5432/app",
     [("pa55w0rd", "url_credentials")]),
    ("proxy header Authorization: Basic dXNlcjpwYXNzd29yZA== rejected",
     [("dXNlcjpwYXNzd29yZA==", "authorization")]),
    (f"loaded key material {PEM} from disk", [("MIIEowIBAAKCAQEA7bq98RsDqK", "private_key"),
                                             ("ZmV5aGVyZQ==", "private_key")]),
    ("signup email=carol@example.org password=Winter2024! card 4000 0566 5566 5556",
     [("carol@example.org", "email"), ("Winter2024!", "password"), ("4000 0566 5566 5556", "card")]),
]


@pytest.fixture(scope="module")
def masker():
    return get_masker()


def test_corpus_is_big_and_covers_every_kind():
    assert len(CORPUS) >= 40
    kinds = {kind for _, secrets in CORPUS for _, kind in secrets}
    assert kinds >= {"password", "api_key", "bearer", "jwt", "card", "email", "phone",
                     "url_credentials", "authorization", "private_key"}


@pytest.mark.parametrize("line,secrets", CORPUS, ids=[f"line{i}" for i in range(len(CORPUS))])
def test_planted_secrets_are_masked(masker, line, secrets):
    out = masker.mask_text(line)
    for secret, kind in secrets:
        assert secret not in out, out
        assert f"[MASKED:{kind}]" in out, out


def test_every_planted_secret_in_the_corpus_is_gone(masker):
    planted = [(secret, masker.mask_text(line)) for line, secrets in CORPUS for secret, _ in secrets]
    leaked = [secret for secret, out in planted if secret in out]
    assert leaked == [] and len(planted) >= 45


def test_keys_and_quotes_are_kept(masker):
    assert masker.mask_text("password=hunter2") == "password=[MASKED:password]"
    assert masker.mask_text('{"password": "x y"}') == '{"password": "[MASKED:password]"}'
    assert masker.mask_text("Authorization: Bearer abc123def456") == (
        "Authorization: Bearer [MASKED:bearer]")
    assert masker.mask_text("x-api-key: abc123") == "x-api-key: [MASKED:api_key]"


ORDINARY = [
    "2024-05-01T12:00:00.123Z INFO request completed in 152ms status=200",
    "ts=1714564800 epoch_ms=1714564800123 epoch_us=1714564800123456 epoch_ns=1714564800123456789",
    "request_id=550e8400-e29b-41d4-a716-446655440000 trace=4bf92f3577b34da6a3ce929d0e0e4736",
    "UUID 123e4567-e89b-12d3-a456-426614174000 and 42345678-1234-1234-1234-123456789012",
    "listening on 0.0.0.0:8080 and [::]:8443, metrics on :9090",
    "version 1.2.3 build 20240501123045 (commit 3f2a9c1) python 3.11.9",
    "took 1500ms, 2.5s total, retry in 30s, backoff 1h30m, timeout=10s",
    "processed 1234567 rows, 98765 bytes, 42 errors, 3 warnings",
    "user bob logged in from 192.168.1.10 via 10.0.0.1",
    "GET /api/v1/items?page=2&limit=50 200 512 0.013 \"Mozilla/5.0\"",
    "tokens_used=1234 max_tokens=4096 token_count=17 tokenizer=bpe",
    "password reset requested for user 42",
    "bearer authentication failed for realm api",
    "date 2024-05-01 12:00:00 +0200 tz=+02:00 offset -0500",
    "pid 12345 ppid 1 uid 1000 gid 1000 fd 256",
    "Disk usage 73.5% on /dev/sda1 (123456789 KB free of 987654321 KB)",
    "image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 pulled",
    "npm install left-pad@1.3.0 react@18.2.0",
    "invoice INV-2024-000123 amount 1234.56 EUR due 2024-06-01",
    "latency p99=1234.5ms p50=12.3ms rps=2500",
    "job duration 00:01:30.500 next run 2024-05-02T00:00:00Z",
    "counter 12345678901234567890 wrapped",
    "order 4111111111111112 shipped",
    "kafka offset 3456789012345 partition 7 lag 0",
    "temperature +21.5C humidity 40%",
    "retry attempt 3/5 after +250ms jitter",
    "phone verification step 3 of 4",
    "released v2024.05.01 to production",
    "heap 512MB/2048MB gc 12 pauses 3.4ms",
    "range 100-200-3000 bytes",
]


@pytest.mark.parametrize("line", ORDINARY)
def test_ordinary_lines_are_not_masked(masker, line):
    assert masker.mask_text(line) == line


def test_ipv4_rule_exists_but_is_disabled_by_default(masker):
    doc = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    ipv4 = [r for r in doc["rules"] if r["kind"] == "ipv4"]
    assert ipv4 and ipv4[0]["enabled"] is False
    assert "ipv4" not in {r.kind for r in masker.rules}
    ipv4[0]["enabled"] = True
    enabled = compile_rules(doc)
    assert enabled.mask_text("from 192.168.1.10 port 22") == "from [MASKED:ipv4] port 22"
    assert enabled.mask_text("version 1.2.3") == "version 1.2.3"


def test_luhn():
    assert luhn_ok("4111 1111 1111 1111")
    assert not luhn_ok("4111 1111 1111 1112")
    assert not luhn_ok("0")
    assert not luhn_ok("4" * 20)


def _event(message: str, **fields) -> Event:
    return Event(level="ERROR", level_no=LEVEL_NUMBERS["ERROR"], message=message, tenant_id="acme",
                 plugin_id="auth", ts=datetime(2024, 5, 1, tzinfo=timezone.utc),
                 trace_id="trace-1", fields=fields)


def test_mask_event_message_and_fields_recursively(masker):
    ev = _event(
        "login for alice@example.com failed password=hunter2",
        password="plainvalue", user={"email": "bob@example.com", "api_key": "kkk123",
                                    "nested": [{"token": "t0k3n"}, "card 4111 1111 1111 1111"]},
        headers={"Authorization": "Basic Zm9vOmJhcg==", "Accept": "*/*"},
        count=5, ratio=0.5, ok=True, nothing=None, db_password=None,
    )
    out = masker.mask_event(ev)
    assert out is not ev and ev.fields["password"] == "plainvalue"
    assert out.message == "login for [MASKED:email] failed password=[MASKED:password]"
    f = out.fields
    assert f["password"] == "[MASKED:password]"
    assert f["user"]["email"] == "[MASKED:email]"
    assert f["user"]["api_key"] == "[MASKED:api_key]"
    assert f["user"]["nested"] == [{"token": "[MASKED:password]"}, "card [MASKED:card]"]
    assert f["headers"] == {"Authorization": "[MASKED:authorization]", "Accept": "*/*"}
    assert (f["count"], f["ratio"], f["ok"], f["nothing"], f["db_password"]) == (5, 0.5, True, None, None)
    assert out.trace_id == "trace-1" and out.tenant_id == "acme"


def test_module_level_helper():
    assert mask_text("password=x1") == "password=[MASKED:password]"


def test_cache_is_keyed_by_path_and_mtime(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - kind: foo\n    pattern: 'foo\\d+'\n")
    first = get_masker(path)
    assert get_masker(path) is first
    assert first.mask_text("id foo42") == "id [MASKED:foo]"
    path.write_text("rules:\n  - kind: bar\n    pattern: 'bar\\d+'\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = get_masker(path)
    assert second is not first and second.mask_text("foo42 bar7") == "foo42 [MASKED:bar]"


@pytest.mark.parametrize("text,needle", [
    ("rules: 3", "expected a mapping"),
    ("rules:\n  - kind: x\n    pattern: '('\n", "pattern: missing \\): \\($"),  # pyre2's bytes, decoded
    ("rules:\n  - kind: x\n    pattern: 'a'\n    validator: crc\n", "unknown validator"),
    ("rules:\n  - kind: x\n    pattern: 'a'\n    hint: [a]\n", "unknown keys"),
    ("rules:\n  - kind: Bad Kind\n    pattern: 'a'\n", "kind"),
    ("rules: [\n", "cannot load"),
])
def test_bad_rules_fail_closed(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MaskingRuleError, match=needle):
        get_masker(path)


def test_missing_rules_file_fails_closed(tmp_path):
    with pytest.raises(MaskingRuleError):
        get_masker(tmp_path / "absent.yaml")


@pytest.mark.parametrize("hostile", [
    "1" * 50_000, "4 " * 25_000, "4111-" * 10_000, "a." * 25_000 + "@", "a@" + "b." * 25_000,
    "password=" * 5_000, "Bearer " * 5_000 + "x", "eyJ" * 15_000, "+1 " * 15_000,
    "(123) " * 10_000, "_" * 50_000 + "token=x", 'password="' + '\\"' * 20_000,
    "123.456." * 10_000, "-----BEGIN PRIVATE KEY-----" + "x" * 50_000,
])
def test_no_catastrophic_backtracking(masker, hostile):
    start = time.perf_counter()
    masker.mask_text(hostile)
    assert time.perf_counter() - start < 1.0
