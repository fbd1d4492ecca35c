"""Total deadlines and response caps on outgoing connections, against real local servers that drip.

Each server sends one byte (or line) every 0.5 s for up to 30 s: under the old per-read timeouts
every call below took those 30 s (the server's own give-up), so the time bounds are the regression.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from ipaddress import ip_network

import pytest

from apps.delivery.http import DeadlineExceeded, post_pinned
from apps.delivery.ssrf import ResolvedTarget
from apps.delivery.transports import (
    EmailTransport,
    OutboundMessage,
    SmsConfig,
    SmsTransport,
    TransportError,
    WebhookConfig,
    WebhookTransport,
)
from apps.delivery.transports.email import DeadlineEmailBackend

LOOPBACK = (ip_network("127.0.0.0/8"),)
DEADLINE = 2.0
SLACK = 1.0  # thread scheduling on a busy 2-core box; far below the 30 s a drip holds the old code
DRIP_EVERY = 0.5
SERVER_GIVES_UP = 30.0


class RawServer:
    """TCP server on 127.0.0.1:<ephemeral>; ``serve(conn)`` runs per connection in a thread."""

    def __init__(self, serve: Callable[[socket.socket], None]):
        self.serve = serve
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.serve(conn)
            except OSError:  # the client hung up: what a deadline does
                pass

    def drip(self, conn: socket.socket, data: bytes) -> None:
        """Send ``data`` one byte every DRIP_EVERY s, then nothing, until SERVER_GIVES_UP."""
        end = time.monotonic() + SERVER_GIVES_UP
        for byte in data:
            if self.stop.is_set() or time.monotonic() > end:
                return
            conn.sendall(bytes([byte]))
            time.sleep(DRIP_EVERY)
        self.stop.wait(max(0.0, end - time.monotonic()))

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head


ENDLESS_HEADERS = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Drip-%d: y\r\n" % i for i in range(1000))


@pytest.fixture
def server():
    servers: list[RawServer] = []

    def make(serve):
        s = RawServer(serve)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def header_dripper(server):
    def serve(conn):
        read_request(conn)
        srv.drip(conn, ENDLESS_HEADERS)

    srv = server(serve)
    return srv


def endless_body(server, status: bytes = b"500 Internal Server Error"):
    sent = {"bytes": 0}

    def serve(conn):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        chunk = b"x" * 16384
        end = time.monotonic() + SERVER_GIVES_UP
        while time.monotonic() < end:
            conn.sendall(chunk)
            sent["bytes"] += len(chunk)

    srv = server(serve)
    srv.sent = sent
    return srv


def webhook(timeout: float = DEADLINE, **kw) -> WebhookTransport:
    return WebhookTransport(WebhookConfig(allowed_networks=LOOPBACK, timeout=timeout, **kw))


def hook_msg(url: str) -> OutboundMessage:
    return OutboundMessage(msg_id="msg_1", url=url, body=b'{"type":"webhook.test"}')


def timed(fn):
    start = time.monotonic()
    with pytest.raises(TransportError) as exc:
        fn()
    return exc.value, time.monotonic() - start


# --- webhook ------------------------------------------------------------------------------------


def test_webhook_dripping_headers_stopped_at_total_deadline(server):
    srv = header_dripper(server)
    err, took = timed(lambda: webhook().send(hook_msg(f"http://127.0.0.1:{srv.port}/hook")))
    assert DEADLINE - 0.1 <= took < DEADLINE + SLACK, took
    assert not err.permanent and err.status_code is None
    assert f"no response from 127.0.0.1:{srv.port} within 2 s" in err.message


def test_webhook_dripping_tls_handshake_stopped_at_total_deadline(server):
    def serve(conn):
        conn.recv(65536)  # the ClientHello
        # A handshake record header announcing 16 KiB, then its bytes one at a time.
        srv.drip(conn, b"\x16\x03\x03\x40\x00" + b"\x02" * 200)

    srv = server(serve)
    err, took = timed(lambda: webhook().send(hook_msg(f"https://127.0.0.1:{srv.port}/hook")))
    assert took < DEADLINE + SLACK, took
    assert not err.permanent
    assert "within 2 s" in err.message


def test_webhook_kept_alive_connection_is_held_to_the_next_deadline(server):
    """The second send reuses the first one's socket: it must be watched again."""
    requests_seen = []

    def serve(conn):
        requests_seen.append(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        requests_seen.append(read_request(conn))
        srv.drip(conn, ENDLESS_HEADERS)

    srv = server(serve)
    t = WebhookTransport(WebhookConfig(allowed_networks=LOOPBACK, timeout=DEADLINE), keep_alive=True)
    url = f"http://127.0.0.1:{srv.port}/hook"
    assert t.send(hook_msg(url)).status_code == 200
    err, took = timed(lambda: t.send(hook_msg(url)))
    assert took < DEADLINE + SLACK, took
    assert len(requests_seen) == 2 and srv.connections == 1  # really the kept connection
    assert "within 2 s" in err.message


def test_webhook_self_test_held_to_the_deadline(server, settings, tenant):
    """The API's `test` action (synchronous, in a web worker) is the call the attack held for 95 s."""
    from apps.delivery.services import create_endpoint, self_test_endpoint

    settings.WEBHOOK_ALLOWED_NETWORKS = list(LOOPBACK)
    settings.WEBHOOK_TIMEOUT_SECONDS = DEADLINE
    srv = header_dripper(server)
    endpoint, _ = create_endpoint(tenant=tenant, url=f"http://127.0.0.1:{srv.port}/hook")
    start = time.monotonic()
    result = self_test_endpoint(endpoint=endpoint)
    assert time.monotonic() - start < DEADLINE + SLACK
    assert not result.ok and "within 2 s" in result.error


def test_endless_body_read_is_capped(server):
    srv = endless_body(server, b"200 OK")
    target = ResolvedTarget(host="127.0.0.1", port=srv.port, scheme="http", addresses=("127.0.0.1",))
    start = time.monotonic()
    resp = post_pinned(target, f"http://127.0.0.1:{srv.port}/", body=b"{}", headers={}, timeout=DEADLINE,
                       max_body=65536)
    assert time.monotonic() - start < DEADLINE  # stopped by the cap, not the deadline
    assert resp.status_code == 200 and resp.content == b"x" * 65536


def test_webhook_endless_error_body_keeps_a_small_excerpt(server, settings):
    settings.DELIVERY_MAX_RESPONSE_BYTES = 4096
    srv = endless_body(server)
    assert WebhookConfig.from_settings().max_response_bytes == 4096
    err, took = timed(lambda: webhook(max_response_bytes=4096).send(hook_msg(f"http://127.0.0.1:{srv.port}/")))
    assert took < DEADLINE
    assert err.status_code == 500 and err.response_excerpt == "x" * 1024


def test_post_pinned_deadline_exceeded_is_a_read_timeout(server):
    srv = header_dripper(server)
    target = ResolvedTarget(host="127.0.0.1", port=srv.port, scheme="http", addresses=("127.0.0.1",))
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        post_pinned(target, f"http://127.0.0.1:{srv.port}/", body=b"{}", headers={}, timeout=1.0)
    assert time.monotonic() - start < 1.0 + SLACK


# --- SMS provider ---------------------------------------------------------------------------------


def sms(port: int, timeout: float = DEADLINE, **kw) -> SmsTransport:
    return SmsTransport(SmsConfig(api_url=f"http://127.0.0.1:{port}", account_sid="AC1", auth_token="t",
                                  from_number="+1555", timeout=timeout, **kw))


def sms_msg() -> OutboundMessage:
    return OutboundMessage(msg_id="m", recipients=("+15550002222",), text="disk full")


def test_sms_dripping_provider_stopped_at_total_deadline(server):
    srv = header_dripper(server)
    err, took = timed(lambda: sms(srv.port).send(sms_msg()))
    assert DEADLINE - 0.1 <= took < DEADLINE + SLACK, took
    assert not err.permanent and "did not answer within 2 s" in err.message


def test_sms_endless_provider_body_is_capped(server, settings):
    """The old path read the whole body (requests without stream): an endless one never ended."""
    settings.SMS_TIMEOUT_SECONDS = 20.0
    settings.DELIVERY_MAX_RESPONSE_BYTES = 8192
    cfg = SmsConfig.from_settings()
    assert (cfg.timeout, cfg.max_response_bytes) == (20.0, 8192)
    srv = endless_body(server)
    err, took = timed(lambda: sms(srv.port, timeout=20.0, max_response_bytes=8192).send(sms_msg()))
    assert took < DEADLINE, took
    assert err.status_code == 500 and len(err.response_excerpt) == 1024


# --- SMTP -----------------------------------------------------------------------------------------


def smtp_dripper(server):
    def serve(conn):
        srv.drip(conn, b"220 " + b"x" * 500 + b"\r\n")

    srv = server(serve)
    return srv


def email_msg() -> OutboundMessage:
    return OutboundMessage(msg_id="m", recipients=("ops@example.com",), subject="s", text="t")


def test_smtp_dripping_greeting_stopped_at_session_deadline(server):
    srv = smtp_dripper(server)
    conn = DeadlineEmailBackend(host="127.0.0.1", port=srv.port, username="", password="", use_tls=False,
                                use_ssl=False, timeout=DEADLINE)
    err, took = timed(lambda: EmailTransport(connection=conn, timeout=DEADLINE).send(email_msg()))
    assert DEADLINE - 0.1 <= took < DEADLINE + SLACK, took
    assert not err.permanent and "SMTP session did not finish within 2 s" in err.message


def test_smtp_configured_backend_gets_the_session_deadline(server, settings):
    srv = smtp_dripper(server)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", srv.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = DEADLINE
    err, took = timed(lambda: EmailTransport().send(email_msg()))
    assert took < DEADLINE + SLACK, took
    assert "SMTP session did not finish within 2 s" in err.message


def test_ssl_socket_can_be_watched():
    """The watchdog duplicates descriptors itself: SSLSocket.dup() is refused by the ssl module."""
    from apps.delivery.deadline import Deadline, watch_socket, watchdog

    a, b = socket.socketpair()
    tls = ssl.create_default_context().wrap_socket(a, do_handshake_on_connect=False, server_hostname="x")
    with tls, b, watchdog(Deadline(0.2)) as dog:
        watch_socket(tls)
        b.settimeout(3)
        assert b.recv(1) == b""  # our side was shut down at the deadline: the peer sees EOF
        assert dog.fired
