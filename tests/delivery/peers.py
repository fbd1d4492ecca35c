"""Real local peers for delivery tests: a programmable webhook receiver, an SMTP sink, an SMS API,
and helpers that make alerts the way the alert services do (a row + alert_event in one transaction)."""
from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from django.db import transaction
from django.utils import timezone

from tests.support.http import PeerServer


class Hook:
    """Threaded HTTP receiver. ``script(n, path, body) -> (status, headers)`` decides each answer
    (n counts requests from 1); every request is kept with its arrival time (monotonic)."""

    def __init__(self, script: Callable[[int, str, bytes], tuple[int, dict]] | None = None):
        self.script = script or (lambda n, path, body: (200, {}))
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.lock:
                    hook.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "body": body, "at": time.monotonic()})
                    n = len(hook.requests)
                status, headers = hook.script(n, self.path, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = PeerServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        return [r["headers"].get("webhook-id") for r in self.requests]


class SmtpSink:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    def __enter__(self):
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.sink = SmtpSink()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def envelopes(self):
        return self.sink.envelopes


SMS_SID, SMS_TOKEN = "ACtest", "sms-token"


class SmsServer:
    """Twilio-shaped: POST /2010-04-01/Accounts/{sid}/Messages.json with basic auth; keeps messages."""

    def __init__(self):
        self.messages: list[dict] = []
        sms = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = "Basic " + base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
                ok = self.path == f"/2010-04-01/Accounts/{SMS_SID}/Messages.json" and self.headers.get("Authorization") == auth
                if ok:
                    sms.messages.append({k: v[0] for k, v in parse_qs(body.decode()).items()})
                self.send_response(201 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = PeerServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def peer_settings(smtp: SmtpServer | None = None, sms: SmsServer | None = None) -> dict[str, object]:
    """Settings (for override_settings) and env (for the worker) pointing at the local peers."""
    from ipaddress import ip_network

    out: dict[str, object] = {"WEBHOOK_ALLOWED_NETWORKS": [ip_network("127.0.0.0/8")]}
    if smtp:
        out.update(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1",
                   EMAIL_PORT=smtp.port, EMAIL_HOST_USER="", EMAIL_HOST_PASSWORD="", EMAIL_USE_TLS=False,
                   EMAIL_USE_SSL=False)
    if sms:
        out.update(SMS_API_URL=sms.url, SMS_ACCOUNT_SID=SMS_SID, SMS_AUTH_TOKEN=SMS_TOKEN, SMS_FROM="+15550001111")
    return out


def peer_env(smtp: SmtpServer | None = None, sms: SmsServer | None = None, **extra: str) -> dict[str, str]:
    env = {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_FORMAT": "text"}
    if smtp:
        env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp.port}"
    if sms:
        env.update(SMS_API_URL=sms.url, SMS_ACCOUNT_SID=SMS_SID, SMS_AUTH_TOKEN=SMS_TOKEN, SMS_FROM="+15550001111")
    env.update(extra)
    return env


_seq = iter(range(1, 10**9))


def fire_alert(tenant, *, plugin=None, severity: str = "critical", title: str = "Error burst",
               event_type: str = "alert.triggered"):
    """Create an Alert row and notify delivery inside one transaction, as the alert services do."""
    from apps.alerts.history import emit
    from apps.alerts.models import Alert

    now = timezone.now()
    with transaction.atomic():
        alert = Alert.objects.create(
            tenant=tenant, plugin=plugin, fingerprint=f"fp-{next(_seq)}-{time.monotonic_ns()}", severity=severity,
            title=title, summary="42 errors in 5 minutes", recommended_action="Roll back", count=42,
            window_seconds=300, first_seen=now, last_seen=now, created_at=now, updated_at=now,
        )
        emit(alert, event_type, {})
    return alert


def emit(alert, event_type: str, data: dict | None = None) -> None:
    from apps.alerts import history

    with transaction.atomic():
        history.emit(alert, event_type, data or {})
