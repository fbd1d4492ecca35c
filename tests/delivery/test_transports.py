"""Transports against real local servers: HTTP receivers in threads and an aiosmtpd SMTP sink."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import ssl
import threading
import time
from email import message_from_bytes
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from ipaddress import ip_network
from urllib.parse import parse_qs

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from apps.delivery.http import post_pinned
from apps.delivery.signing import new_secret, sign, verify_powerx
from apps.delivery.ssrf import ResolvedTarget
from apps.delivery.transports import (
    EmailTransport,
    OutboundMessage,
    SmsConfig,
    SmsTransport,
    TransportError,
    WebhookConfig,
    WebhookTransport,
    get_transport,
)
from tests.support.http import PeerServer

LOOPBACK = (ip_network("127.0.0.0/8"),)


# --- a recording HTTP receiver ------------------------------------------------------------------


class Receiver:
    """Threaded HTTP(S) server on 127.0.0.1:<ephemeral>; ``route(handler) -> (status, headers, body)``."""

    def __init__(self, route, tls_context: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, headers, payload = route(self, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = PeerServer(("127.0.0.1", 0), Handler)
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def webhook_route(handler, body):
    path = handler.path.split("?")[0]
    if path == "/ok":
        return 200, {"Content-Type": "application/json"}, b'{"received": true}'
    if path == "/fail":
        return 500, {}, b"internal kaboom"
    if path == "/gone":
        return 410, {}, b"gone"
    if path == "/busy":
        return 429, {"Retry-After": "120"}, b"slow down"
    if path == "/unavailable":
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=300)
        return 503, {"Retry-After": format_datetime(later, usegmt=True)}, b""
    if path == "/slow":
        time.sleep(1.5)
        return 200, {}, b"late"
    if path == "/redirect":
        return 302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""
    if path == "/big":
        return 500, {}, b"x" * 100_000
    return 404, {}, b"no such path"


@pytest.fixture
def receiver():
    with Receiver(webhook_route) as r:
        yield r


def loopback_transport(**kw) -> WebhookTransport:
    return WebhookTransport(WebhookConfig(allowed_networks=LOOPBACK, timeout=kw.pop("timeout", 3.0), **kw))


def msg(url: str, body: bytes = b'{"type":"webhook.test"}', headers=None) -> OutboundMessage:
    return OutboundMessage(msg_id="msg_1", url=url, body=body, headers=headers or {})


def resolver_to(ip: str):
    def resolve(host, port, type=0, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]

    return resolve


# --- webhook --------------------------------------------------------------------------------------


def test_webhook_success_with_verifiable_signatures(receiver):
    secret = new_secret()
    body = json.dumps({"type": "alert.triggered", "data": {"id": "a1"}}).encode()
    headers = sign(body=body, msg_id="msg_42", timestamp=int(time.time()), secrets=[secret])
    headers["X-PowerX-Alert-ID"] = "a1"
    result = loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/ok", body, headers))

    assert result.status_code == 200
    assert result.response_excerpt == '{"received": true}'
    assert result.latency_ms >= 0
    [req] = receiver.requests
    assert req["body"] == body
    got = req["headers"]
    assert got["Content-Type"] == "application/json"
    assert got["X-PowerX-Alert-ID"] == "a1"
    assert got["Host"] == f"127.0.0.1:{receiver.port}"
    Webhook(secret).verify(req["body"], {k.lower(): v for k, v in got.items()})
    assert verify_powerx(req["body"], got["X-PowerX-Signature"], secret)


def test_webhook_connects_to_checked_address_with_original_host_header(receiver):
    t = WebhookTransport(WebhookConfig(allowed_networks=LOOPBACK), resolver=resolver_to("127.0.0.1"))
    t.send(msg(f"http://hook.test:{receiver.port}/ok?x=1"))
    [req] = receiver.requests
    assert req["path"] == "/ok?x=1"
    assert req["headers"]["Host"] == f"hook.test:{receiver.port}"


def test_webhook_500_is_transient_with_excerpt(receiver):
    with pytest.raises(TransportError) as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/fail"))
    e = exc.value
    assert (e.status_code, e.permanent, e.retry_after) == (500, False, None)
    assert e.response_excerpt == "internal kaboom"
    assert "HTTP 500" in e.message


def test_webhook_410_is_permanent(receiver):
    with pytest.raises(TransportError, match="gone") as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/gone"))
    assert exc.value.permanent and exc.value.status_code == 410


def test_webhook_429_retry_after_seconds(receiver):
    with pytest.raises(TransportError) as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/busy"))
    e = exc.value
    assert (e.status_code, e.permanent, e.retry_after) == (429, False, 120.0)


def test_webhook_503_retry_after_http_date(receiver):
    with pytest.raises(TransportError) as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/unavailable"))
    assert exc.value.status_code == 503
    assert 290 <= exc.value.retry_after <= 300


def test_webhook_timeout_is_transient(receiver):
    start = time.monotonic()
    with pytest.raises(TransportError, match=r"no response from 127\.0\.0\.1:\d+ within 0\.3 s") as exc:
        loopback_transport(timeout=0.3).send(msg(f"http://127.0.0.1:{receiver.port}/slow"))
    assert time.monotonic() - start < 1.4
    assert not exc.value.permanent and exc.value.status_code is None


def test_webhook_redirect_to_metadata_not_followed(receiver):
    with pytest.raises(TransportError, match=r"redirect 302 to http://169\.254\.169\.254/latest/meta-data/ not followed") as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/redirect"))
    assert exc.value.status_code == 302
    assert [r["path"] for r in receiver.requests] == ["/redirect"]


def test_webhook_response_excerpt_capped_at_1kib(receiver):
    with pytest.raises(TransportError) as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{receiver.port}/big"))
    assert exc.value.response_excerpt == "x" * 1024


def test_webhook_loopback_refused_without_allowed_networks(receiver):
    for config in (WebhookConfig(), WebhookConfig(allow_http=True)):
        with pytest.raises(TransportError, match="URL refused") as exc:
            WebhookTransport(config).send(msg(f"http://127.0.0.1:{receiver.port}/ok"))
        assert exc.value.permanent
    assert receiver.requests == []


def test_webhook_rebinding_name_to_loopback_refused(receiver):
    t = WebhookTransport(WebhookConfig(allow_http=True), resolver=resolver_to("127.0.0.1"))
    with pytest.raises(TransportError, match="loopback"):
        t.send(msg(f"http://rebind.example:{receiver.port}/ok"))
    assert receiver.requests == []


def test_webhook_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    with pytest.raises(TransportError, match=f"connection to 127.0.0.1:{port} failed") as exc:
        loopback_transport().send(msg(f"http://127.0.0.1:{port}/ok"))
    assert not exc.value.permanent


def test_webhook_dns_failure_is_transient():
    def nx(*a, **kw):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(TransportError, match="could not resolve") as exc:
        WebhookTransport(WebhookConfig(), resolver=nx).send(msg("https://nx.example/hook"))
    assert not exc.value.permanent


def test_webhook_config_from_settings_and_registry(settings, receiver):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.WEBHOOK_ALLOW_HTTP = False
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.5
    assert WebhookConfig.from_settings() == WebhookConfig(allowed_networks=LOOPBACK, timeout=2.5)
    t = get_transport("webhook")
    assert t.send(msg(f"http://127.0.0.1:{receiver.port}/ok")).status_code == 200
    with pytest.raises(KeyError, match="known: email, sms, webhook"):
        get_transport("pigeon")


def test_webhook_config_is_built_once_per_settings_and_follows_a_change(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.5
    first = WebhookConfig.from_settings()
    assert WebhookConfig.from_settings() is first  # every send reads it: no rebuild per send
    settings.WEBHOOK_TIMEOUT_SECONDS = 4
    settings.WEBHOOK_ALLOWED_NETWORKS = "10.0.0.0/8, 127.0.0.1/8"
    changed = WebhookConfig.from_settings()
    assert (changed.timeout, changed.allowed_networks) == (4.0, (ip_network("10.0.0.0/8"), ip_network("127.0.0.0/8")))
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.5
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    assert WebhookConfig.from_settings() == first


# --- TLS: pinned address, SNI and certificate checked against the hostname ------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA and a server certificate for hook.test signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hook.test")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hook.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return d


@pytest.fixture
def tls_receiver(tls_files):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls_files / "cert.pem", tls_files / "key.pem")
    sni: list[str | None] = []
    ctx.sni_callback = lambda sock, name, c: sni.append(name)
    with Receiver(webhook_route, tls_context=ctx) as r:
        r.sni = sni
        yield r


def test_pinned_https_sends_sni_and_verifies_hostname(tls_receiver, tls_files):
    port = tls_receiver.port
    target = ResolvedTarget(host="hook.test", port=port, scheme="https", addresses=("127.0.0.1",))
    resp = post_pinned(
        target, f"https://hook.test:{port}/ok", body=b"{}", headers={}, timeout=3, verify=str(tls_files / "ca.pem")
    )
    assert resp.status_code == 200 and resp.content == b'{"received": true}'
    assert resp.url == f"https://hook.test:{port}/ok"
    assert tls_receiver.sni == ["hook.test"]
    assert tls_receiver.requests[0]["headers"]["Host"] == f"hook.test:{port}"


def test_pinned_https_rejects_certificate_for_another_name(tls_receiver, tls_files):
    port = tls_receiver.port
    target = ResolvedTarget(host="other.test", port=port, scheme="https", addresses=("127.0.0.1",))
    with pytest.raises(requests.exceptions.SSLError):
        post_pinned(target, f"https://other.test:{port}/ok", body=b"{}", headers={}, timeout=3,
                    verify=str(tls_files / "ca.pem"))
    assert tls_receiver.requests == []


def test_pinned_https_rejects_untrusted_certificate(tls_receiver):
    port = tls_receiver.port
    target = ResolvedTarget(host="hook.test", port=port, scheme="https", addresses=("127.0.0.1",))
    with pytest.raises(requests.exceptions.SSLError):
        post_pinned(target, f"https://hook.test:{port}/ok", body=b"{}", headers={}, timeout=3)


def test_webhook_transport_over_tls_reports_tls_errors(tls_receiver, tls_files):
    ok = WebhookTransport(
        WebhookConfig(allowed_networks=LOOPBACK, verify=str(tls_files / "ca.pem")), resolver=resolver_to("127.0.0.1")
    )
    assert ok.send(msg(f"https://hook.test:{tls_receiver.port}/ok")).status_code == 200
    untrusted = WebhookTransport(WebhookConfig(allowed_networks=LOOPBACK), resolver=resolver_to("127.0.0.1"))
    with pytest.raises(TransportError, match="TLS error with hook.test") as exc:
        untrusted.send(msg(f"https://hook.test:{tls_receiver.port}/ok"))
    assert not exc.value.permanent


def test_post_pinned_refuses_url_other_than_checked_target():
    target = ResolvedTarget(host="hook.test", port=443, scheme="https", addresses=("127.0.0.1",))
    with pytest.raises(ValueError, match="does not match"):
        post_pinned(target, "https://evil.test/", body=b"", headers={}, timeout=1)


# --- SMS (Twilio shape) ---------------------------------------------------------------------------

SID, TOKEN = "AC0123456789", "tok-secret"


def sms_route(handler, body):
    expected_auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    if handler.headers.get("Authorization") != expected_auth:
        return 401, {"Content-Type": "application/json"}, b'{"code": 20003, "message": "Authenticate"}'
    if handler.path != f"/2010-04-01/Accounts/{SID}/Messages.json":
        return 404, {}, b"wrong path"
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    to = form.get("To", "")
    if to.endswith("400"):
        return 400, {"Content-Type": "application/json"}, b'{"code": 21211, "message": "Invalid To Phone Number"}'
    if to.endswith("429"):
        return 429, {"Retry-After": "7"}, b"{}"
    if to.endswith("500"):
        return 500, {}, b"provider down"
    return 201, {"Content-Type": "application/json"}, json.dumps({"sid": "SM1", "status": "queued"}).encode()


@pytest.fixture
def sms_server():
    with Receiver(sms_route) as r:
        yield r


def sms_transport(server, token=TOKEN) -> SmsTransport:
    return SmsTransport(SmsConfig(api_url=f"http://127.0.0.1:{server.port}/", account_sid=SID, auth_token=token,
                                  from_number="+15550001111", timeout=3))


def test_sms_success_form_fields_and_truncation(sms_server):
    text = "[CRITICAL] " + "disk full on node-7 " * 20
    res = sms_transport(sms_server).send(OutboundMessage(msg_id="m", recipients=("+15550002222",), text=text))
    assert res.status_code == 201 and '"sid": "SM1"' in res.response_excerpt
    [req] = sms_server.requests
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    form = {k: v[0] for k, v in parse_qs(req["body"].decode()).items()}
    assert form["To"] == "+15550002222" and form["From"] == "+15550001111"
    assert len(form["Body"]) == 160 and form["Body"].startswith("[CRITICAL] disk full") and form["Body"].endswith("...")


def test_sms_short_body_kept(sms_server):
    sms_transport(sms_server).send(OutboundMessage(msg_id="m", recipients=("+1555",), text="short"))
    assert parse_qs(sms_server.requests[0]["body"].decode())["Body"] == ["short"]


@pytest.mark.parametrize(
    "to, token, status, permanent, retry_after, match",
    [
        ("+15550000400", TOKEN, 400, True, None, "21211 Invalid To"),
        ("+15550000001", "wrong", 401, True, None, "20003"),
        ("+15550000429", TOKEN, 429, False, 7.0, "rate limited"),
        ("+15550000500", TOKEN, 500, False, None, "HTTP 500 provider down"),
    ],
)
def test_sms_failures(sms_server, to, token, status, permanent, retry_after, match):
    with pytest.raises(TransportError, match=match) as exc:
        sms_transport(sms_server, token).send(OutboundMessage(msg_id="m", recipients=(to,), text="x"))
    e = exc.value
    assert (e.status_code, e.permanent, e.retry_after) == (status, permanent, retry_after)


def test_sms_not_configured_is_transient_and_names_setting():
    t = SmsTransport(SmsConfig(api_url="", account_sid=SID, auth_token=TOKEN, from_number=""))
    with pytest.raises(TransportError, match="SMS_API_URL, SMS_FROM missing") as exc:
        t.send(OutboundMessage(msg_id="m", recipients=("+1",), text="x"))
    assert not exc.value.permanent


# --- email against a real SMTP sink ---------------------------------------------------------------


class SmtpSink:
    def __init__(self):
        self.envelopes = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bad@"):
            return "550 5.1.1 No such user"
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture
def smtp_sink():
    from aiosmtpd.controller import Controller

    with socket.socket() as s:  # pick a free port (aiosmtpd probes its own port on start)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    sink.port = port
    yield sink
    controller.stop()


def smtp_connection(port: int):
    from django.core.mail import get_connection

    # Explicit options so the project's EMAIL_URL cannot interfere.
    return get_connection(
        "django.core.mail.backends.smtp.EmailBackend",
        host="127.0.0.1", port=port, username="", password="", use_tls=False, use_ssl=False, timeout=5,
    )


def email_message(*to: str) -> OutboundMessage:
    return OutboundMessage(
        msg_id="m", recipients=to, subject="[CRITICAL] Disk full", text="Disk full on node-7",
        html="<p>Disk full on <b>node-7</b></p>", headers={"X-PowerX-Alert-ID": "a1"},
    )


def test_email_text_and_html_delivered(smtp_sink):
    t = EmailTransport(connection=smtp_connection(smtp_sink.port), from_email="alerts@example.com")
    res = t.send(email_message("ops@example.com", "oncall@example.com"))
    assert res.status_code is None and res.latency_ms >= 0
    [env] = smtp_sink.envelopes
    assert env.mail_from == "alerts@example.com"
    assert env.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    parsed = message_from_bytes(env.content)
    assert parsed["Subject"] == "[CRITICAL] Disk full" and parsed["X-PowerX-Alert-ID"] == "a1"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in parsed.walk() if not p.is_multipart()}
    assert parts["text/plain"].strip() == "Disk full on node-7"
    assert "<b>node-7</b>" in parts["text/html"]


def test_email_recipient_refused_is_permanent(smtp_sink):
    t = EmailTransport(connection=smtp_connection(smtp_sink.port))
    with pytest.raises(TransportError, match="refused recipient bad@example.com: 550") as exc:
        t.send(email_message("bad@example.com"))
    assert exc.value.permanent and exc.value.status_code == 550
    assert smtp_sink.envelopes == []


def test_email_temporary_refusal_is_transient(smtp_sink):
    t = EmailTransport(connection=smtp_connection(smtp_sink.port))
    with pytest.raises(TransportError, match="450") as exc:
        t.send(email_message("busy@example.com"))
    assert not exc.value.permanent


def test_email_server_unreachable_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match="cannot reach the SMTP server") as exc:
        EmailTransport(connection=smtp_connection(port)).send(email_message("ops@example.com"))
    assert not exc.value.permanent


def test_email_without_recipients_is_permanent():
    with pytest.raises(TransportError, match="no email recipients") as exc:
        EmailTransport(connection=object()).send(email_message())
    assert exc.value.permanent
