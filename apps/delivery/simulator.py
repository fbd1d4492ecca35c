"""A sandbox webhook receiver: verifies signatures, dedupes by webhook-id, injects failures.

Used by ``manage.py webhook_simulator`` (the demo), the bench and tests. Each request gets one
printed line: ``<time> <path> id=<webhook-id> sig=<ok|BAD|unchecked> dup=<yes|no> -> <status>``.
Verification: the Standard Webhooks signature (any ``v1,`` entry under any known secret, over
``id.timestamp.body``) and ``X-PowerX-Signature`` (plain HMAC of the body).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from .signing import _standard_key, verify_powerx


def verify_standard(body: bytes, headers: dict[str, str], secret: str) -> bool:
    """True when a ``webhook-signature`` entry matches (Standard Webhooks, v1)."""
    msg_id, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and ts and sigs):
        return False
    mac = hmac.new(_standard_key(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    ok = False
    for entry in sigs.split():
        version, _, value = entry.partition(",")
        ok |= version == "v1" and hmac.compare_digest(value, expected)
    return ok


class _Server(ThreadingHTTPServer):
    # The standard library's listen backlog is 5: a burst of new connections from several sending
    # threads overflows it, and the sender sees ~1 s waits and connection resets we did not cause.
    request_queue_size = 1024
    daemon_threads = True


@dataclass
class SimulatorConfig:
    fail_rate: float = 0.0
    timeout_rate: float = 0.0
    status: int = 500
    latency_ms: int = 0
    timeout_seconds: float = 15.0
    secrets: Callable[[], list[str]] = field(default=lambda: [])
    quiet: bool = False
    seed: int | None = None


class Simulator:
    """Threaded HTTP server; ``received`` maps webhook-id -> first body (dedup), ``log`` every line."""

    def __init__(self, host: str, port: int, config: SimulatorConfig, out: Callable[[str], None] = print) -> None:
        self.config, self.out = config, out
        self.rng = random.Random(config.seed)
        self.lock = threading.Lock()
        self.received: OrderedDict[str, bytes] = OrderedDict()
        self.requests = 0
        self.duplicates = 0
        self.bad_signatures = 0
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are two writes: with Nagle on, a kept-alive client waits for its own
            # delayed ACK (~40 ms) before the body arrives.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload, extra = sim.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = _Server((host, port), Handler)
        self.port = self.server.server_address[1]

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        cfg = self.config
        if cfg.latency_ms:
            time.sleep(cfg.latency_ms / 1000)
        msg_id = headers.get("webhook-id", "")
        secrets = cfg.secrets()
        if secrets:
            ok = any(verify_standard(body, headers, s) and verify_powerx(body, headers.get("x-powerx-signature"), s)
                     for s in secrets)
            sig = "ok" if ok else "BAD"
        else:
            ok, sig = True, "unchecked"
        roll = self.rng.random()
        with self.lock:
            self.requests += 1
            if not ok:
                self.bad_signatures += 1
        if not ok:
            status, extra = 401, {}
        elif roll < cfg.timeout_rate:
            time.sleep(cfg.timeout_seconds)
            status, extra = 504, {}
        elif roll < cfg.timeout_rate + cfg.fail_rate:
            status = cfg.status
            extra = {"Retry-After": "5"} if status in (429, 503) else {}
        else:
            status, extra = 200, {}
        dup = False
        if status == 200:
            with self.lock:
                dup = msg_id in self.received
                if dup:
                    self.duplicates += 1
                else:
                    self.received[msg_id] = body
                    if len(self.received) > 100_000:  # bounded memory for long demo runs
                        self.received.popitem(last=False)
        if not cfg.quiet:
            self.out(f"{time.strftime('%H:%M:%S')} {path} id={msg_id or '-'} sig={sig} "
                     f"dup={'yes' if dup else 'no'} -> {status}")
        return status, orjson.dumps({"ok": status == 200, "duplicate": dup, "signature": sig}), extra

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        t.start()
        return t

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
