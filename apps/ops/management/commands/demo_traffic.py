"""``manage.py demo_traffic``: post realistic logs for the demo tenants until killed (``make run``)."""
from __future__ import annotations

import signal
import time

import orjson
import requests
from django.core.management.base import BaseCommand, CommandError

from apps.ingest.traffic import TrafficGenerator
from apps.ops.demo import DEMO_TENANTS

BURST_EVERY = 45.0  # seconds between error bursts (the first comes after FIRST_BURST_AFTER)
FIRST_BURST_AFTER = 10.0
SECURITY_EVERY = 20.0


class Command(BaseCommand):
    help = ("Post mixed demo logs (with error bursts and security lines) to the intake API until killed, "
            "so alerts show up in the console within a minute.")

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of Alert Center")
        parser.add_argument("--rate", type=int, default=20, help="background events per second (default 20)")
        parser.add_argument("--token", help="logs:write token; default: issue a platform token")
        parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: run until killed)")

    def handle(self, *args, **opts):
        token = opts["token"] or self._issue_token()
        url = opts["url"].rstrip("/") + "/api/v1/logs"
        session = requests.Session()
        session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})
        gen = TrafficGenerator({slug: plugins for slug, (_name, plugins) in DEMO_TENANTS.items()})
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        started = time.monotonic()
        next_burst, next_security = started + FIRST_BURST_AFTER, started + SECURITY_EVERY / 2
        sent = 0
        self.stdout.write(f"demo traffic: posting ~{opts['rate']} events/s to {url}")
        try:
            while not stopping:
                tick = time.monotonic()
                if opts["duration"] and tick - started >= opts["duration"]:
                    break
                events = gen.events(max(1, opts["rate"]))
                if tick >= next_burst:
                    events += gen.error_burst()
                    next_burst = tick + BURST_EVERY
                if tick >= next_security:
                    events.append(gen.security_event())
                    next_security = tick + SECURITY_EVERY
                sent += self._post(session, url, events)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        except KeyboardInterrupt:
            pass
        self.stdout.write(f"demo traffic stopped: {sent} events accepted")

    def _issue_token(self) -> str:
        from apps.tenants.tokens import issue_token

        try:
            return issue_token(name="demo-traffic", scopes="logs:write", tenant=None, actor="demo_traffic")[1]
        except Exception as exc:
            raise CommandError(f"cannot issue a demo token (did `migrate` run?): {exc}") from None

    def _post(self, session: requests.Session, url: str, events: list[dict]) -> int:
        body = b"\n".join(orjson.dumps(e) for e in events)
        try:
            resp = session.post(url, data=body, timeout=10)
        except requests.RequestException as exc:
            # The web process may still be starting: say so and keep going.
            self.stderr.write(f"demo traffic: {url} unreachable ({exc.__class__.__name__}); retrying")
            return 0
        if resp.status_code != 202:
            self.stderr.write(f"demo traffic: HTTP {resp.status_code}: {resp.text[:200]}")
            return 0
        return resp.json()["accepted"]
