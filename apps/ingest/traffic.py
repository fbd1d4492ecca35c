"""Realistic synthetic log events, shared by ``demo_traffic`` (the demo) and ``bench/ingest.py``.

Lines look like what web services, payment and auth gateways write: mostly INFO/DEBUG request
lines, some WARNINGs, a few ERRORs, occasional security lines (matched by the default rule
pack's security rules) and lines carrying secrets that masking must hide.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone

_PATHS = ["/api/cart", "/api/search", "/api/orders", "/api/login", "/api/items/42", "/health", "/api/invoices"]
_USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
_IPS = ["203.0.113.7", "198.51.100.23", "192.0.2.14", "203.0.113.99"]


def _info(r: random.Random) -> tuple[str, str]:
    path = r.choice(_PATHS)
    return "INFO", f"{r.choice(['GET', 'POST'])} {path} {r.choice([200, 200, 200, 201, 204, 304])} {r.randint(2, 180)}ms"


def _debug(r: random.Random) -> tuple[str, str]:
    return "DEBUG", f"cache {r.choice(['hit', 'miss'])} key=session:{r.randint(1000, 99999)} ttl={r.randint(10, 600)}s"


def _warning(r: random.Random) -> tuple[str, str]:
    return "WARNING", r.choice([
        f"slow query on orders took {r.randint(800, 4000)}ms",
        f"retrying upstream call attempt={r.randint(2, 4)} status=503",
        f"connection pool at {r.randint(80, 99)}% capacity",
    ])


def _error(r: random.Random) -> tuple[str, str]:
    return "ERROR", r.choice([
        f"payment provider timeout after {r.randint(3, 10)}000ms order={r.randint(10000, 99999)}",
        "database connection refused: could not connect to server",
        f"unhandled exception in request handler: KeyError('sku_{r.randint(1, 999)}')",
    ])


def _security(r: random.Random) -> tuple[str, str]:
    user, ip = r.choice(_USERS), r.choice(_IPS)
    return r.choice([
        ("WARNING", f"permission denied for user={user} on /admin/settings from {ip}"),
        ("ERROR", f"invalid signature on webhook callback from {ip}"),
        ("WARNING", f"login failed for user={user} from {ip}"),
        ("ERROR", f"possible sql injection in q=\"' OR '1'='1\" from {ip}"),
    ])


def _secretive(r: random.Random) -> tuple[str, str]:
    user = r.choice(_USERS)
    return "INFO", r.choice([
        f"login user={user} password=hunter{r.randint(1, 99)} result=ok",
        f"sent receipt to {user}@example.com",
        f"calling billing api with Authorization: Bearer sk_live_{r.randint(10**15, 10**16)}abc",
    ])


class TrafficGenerator:
    """Random but reproducible (``seed``) events for the given tenants -> plugin slugs.

    ``match_ratio`` is the share of events the default rule pack matches (ERROR lines and
    security lines); the rest is INFO/DEBUG/WARNING noise.
    """

    def __init__(self, tenants: dict[str, list[str]], *, seed: int | None = None, match_ratio: float = 0.05):
        self.random = random.Random(seed)
        self.tenants = [(t, p) for t, plugins in tenants.items() for p in plugins]
        self.match_ratio = match_ratio

    def _line(self) -> tuple[str, str]:
        r = self.random
        x = r.random()
        if x < self.match_ratio * 0.7:
            return _error(r)
        if x < self.match_ratio:
            return _security(r)
        if x < self.match_ratio + 0.08:
            return _warning(r)
        if x < self.match_ratio + 0.10:
            return _secretive(r)
        return _debug(r) if x > 0.85 else _info(r)

    def event(self, *, tenant: str | None = None, plugin: str | None = None, level: str | None = None,
              message: str | None = None, ts: datetime | None = None) -> dict:
        """One event dict as a shipper would send it."""
        r = self.random
        if tenant is None or plugin is None:
            tenant, plugin = r.choice(self.tenants)
        lv, msg = self._line()
        out = {
            "ts": (ts or datetime.now(timezone.utc)).isoformat(timespec="milliseconds"),
            "level": level or lv, "message": message or msg, "tenant_id": tenant, "plugin_id": plugin,
            "trace_id": f"{r.getrandbits(64):016x}", "host": f"{plugin}-{r.randint(1, 3)}",
        }
        if r.random() < 0.3:
            out["duration_ms"] = r.randint(1, 900)
        return out

    def events(self, n: int) -> list[dict]:
        return [self.event() for _ in range(n)]

    def error_burst(self, n: int = 25) -> list[dict]:
        """``n`` ERROR lines from one plugin (crosses the default pack's error-burst threshold)."""
        tenant, plugin = self.random.choice(self.tenants)
        return [self.event(tenant=tenant, plugin=plugin, level="ERROR", message=_error(self.random)[1])
                for _ in range(n)]

    def security_event(self) -> dict:
        tenant, plugin = self.random.choice(self.tenants)
        level, message = _security(self.random)
        return self.event(tenant=tenant, plugin=plugin, level=level, message=message)
