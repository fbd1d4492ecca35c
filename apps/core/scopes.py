"""API token scopes. A token carries a subset; each API view names the scope it needs."""
LOGS_WRITE = "logs:write"
ALERTS_READ = "alerts:read"
ALERTS_WRITE = "alerts:write"
WEBHOOKS_WRITE = "webhooks:write"
RULES_READ = "rules:read"
RULES_WRITE = "rules:write"
# Inbound alerts and events from other systems (Alertmanager, Grafana, the event API).
ALERTS_INGEST = "alerts:ingest"
# Metric samples (POST /api/v1/metrics).
METRICS_WRITE = "metrics:write"
# Ticket bridges and remediation actions (GET / changes).
ACTIONS_READ = "actions:read"
ACTIONS_WRITE = "actions:write"
# Notification channels and routing policies (GET / changes, channel tests).
CHANNELS_READ = "channels:read"
CHANNELS_WRITE = "channels:write"

ALL_SCOPES = (LOGS_WRITE, ALERTS_READ, ALERTS_WRITE, WEBHOOKS_WRITE, RULES_READ, RULES_WRITE, ALERTS_INGEST,
              METRICS_WRITE, ACTIONS_READ, ACTIONS_WRITE, CHANNELS_READ, CHANNELS_WRITE)


def parse_scopes(text: str | list[str]) -> list[str]:
    """Parse "a,b" (or a list) into a sorted, de-duplicated scope list; unknown scopes raise ValueError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = sorted({s.strip() for s in items if s.strip()})
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise ValueError(f"no scope given; known: {', '.join(ALL_SCOPES)}")
    return scopes
