from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand, CommandError

from apps.delivery.simulator import Simulator, SimulatorConfig


def _endpoint_secrets(port: int):
    """Secrets of endpoints pointing at this simulator, re-read at most every 10 s (demo mode)."""
    from django.db import close_old_connections

    from apps.delivery.models import WebhookEndpoint
    from apps.delivery.secrets import active_secrets
    from apps.core import clock

    cache = {"at": 0.0, "secrets": []}

    def load() -> list[str]:
        if time.monotonic() - cache["at"] > 10:
            close_old_connections()
            out: list[str] = []
            for e in WebhookEndpoint.objects.filter(url__contains=f":{port}/"):
                try:
                    out += active_secrets(e, clock.now())
                except Exception:  # noqa: BLE001 - a bad row must not stop the sandbox
                    pass
            cache.update(at=time.monotonic(), secrets=out)
        return cache["secrets"]

    return load


class Command(BaseCommand):
    help = ("Sandbox webhook receiver: verifies both signatures (with --secret, else with the secrets of "
            "endpoints registered at this port), dedupes by webhook-id, injects failures, prints one line "
            "per request and a summary on Ctrl-C.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered --status")
        parser.add_argument("--timeout-rate", type=float, default=0.0, help="share of requests left hanging 15 s")
        parser.add_argument("--status", type=int, default=500, choices=[500, 410, 429, 503],
                            help="status for injected failures (429/503 add Retry-After: 5)")
        parser.add_argument("--latency-ms", type=int, default=0, help="delay before every answer")
        parser.add_argument("--secret", action="append", default=[], help="whsec_... (repeatable)")

    def handle(self, *args, **o):
        if not 0 <= o["fail_rate"] + o["timeout_rate"] <= 1:
            raise CommandError("--fail-rate + --timeout-rate must be between 0 and 1")
        secrets = (lambda: o["secret"]) if o["secret"] else _endpoint_secrets(o["port"])
        cfg = SimulatorConfig(fail_rate=o["fail_rate"], timeout_rate=o["timeout_rate"], status=o["status"],
                              latency_ms=o["latency_ms"], secrets=secrets)
        try:
            sim = Simulator(o["host"], o["port"], cfg, out=lambda line: (self.stdout.write(line), self.stdout.flush()))
        except OSError as exc:
            raise CommandError(f"cannot listen on {o['host']}:{o['port']}: {exc}") from exc
        self.stdout.write(f"webhook_simulator listening on http://{o['host']}:{sim.port}/ "
                          f"(fail-rate {o['fail_rate']}, timeout-rate {o['timeout_rate']}, status {o['status']})")
        self.stdout.flush()
        def stop(*_):
            raise KeyboardInterrupt  # SIGTERM (runstack, tests) ends like Ctrl-C, with the summary

        signal.signal(signal.SIGTERM, stop)
        try:
            sim.server.serve_forever(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            sim.server.server_close()
            self.stdout.write(f"webhook_simulator: {sim.requests} requests, {len(sim.received)} unique deliveries, "
                              f"{sim.duplicates} duplicates, {sim.bad_signatures} bad signatures")
