"""Settings, all from the environment (README "Configuration" lists every variable).

Two ways to run, one code path: with nothing set, Alert Center runs embedded (SQLite in WAL mode
and a file-system Celery broker under ``var/``); ``DATABASE_URL`` / ``REDIS_URL`` /
``CELERY_BROKER_URL`` switch it to PostgreSQL and Redis. A bad value stops the process at start
with a message naming the variable, instead of failing later in a request.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _read(name: str, cast, default=environ.Env.NOTSET):
    """Read one variable; any parse error names the variable and the offending value."""
    try:
        return cast(name, default=default)
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # django-environ raises bare ValueError/KeyError on bad values
        raise ImproperlyConfigured(f"{name}: invalid value {env.str(name, default='')!r} ({exc})") from exc


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name}: invalid value {raw!r} (expected 1/0, true/false, yes/no, on/off)")
    return raw in _TRUE


def _positive_int(name: str, default: int) -> int:
    value = _read(name, env.int, default)
    if value <= 0:
        raise ImproperlyConfigured(f"{name}: must be a positive integer, got {value}")
    return value


def _url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    # An empty variable means "unset" (as in `CELERY_BROKER_URL= make test`).
    value = (_read(name, env.str, default) or default).strip()
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name}: unsupported URL {value!r}; expected one of {', '.join(s + '://' for s in schemes)}"
        )
    return value


DEBUG = _bool("DEBUG", False)
VAR_DIR = Path(_read("ALERTCENTER_VAR_DIR", env.str, str(BASE_DIR / "var"))).resolve()

SECRET_KEY = _read("SECRET_KEY", env.str, "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY: not set. Set SECRET_KEY to a long random string (or DEBUG=1 for a local demo)."
        )
    SECRET_KEY = "insecure-dev-key-only-for-DEBUG-mode-never-in-production"

ALLOWED_HOSTS = _read("ALLOWED_HOSTS", env.list, ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", env.list, [])
# Absolute base of links we send out (alert payloads, emails, SMS).
CONSOLE_BASE_URL = _url("CONSOLE_BASE_URL", "http://localhost:8000", ("http", "https")).rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "apps.core",
    "apps.tenants",
    "apps.audit",
    "apps.alerts",
    "apps.rules",
    "apps.ingest",
    "apps.delivery",
    "apps.console",
    "apps.ops",
    "apps.stream",
    "apps.actions",
    "apps.reports",
]

MIDDLEWARE = [
    # First: answers /-/live before host validation and the HTTPS redirect (Docker HEALTHCHECK).
    "apps.core.probes.LivenessProbeMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.csp.ContentSecurityPolicyMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "alertcenter.urls"
WSGI_APPLICATION = "alertcenter.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = _url(
    "DATABASE_URL",
    f"sqlite:///{VAR_DIR / 'alertcenter.sqlite3'}",
    ("sqlite", "postgres", "postgresql", "pgsql"),
)
DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web, worker and beat processes read while one writes; IMMEDIATE transactions
    # take the write lock up front so concurrent writers queue instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
else:
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = _read("DATABASE_CONN_MAX_AGE", env.int, 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, broker, cache ---------------------------------------------------------------------
REDIS_URL = _read("REDIS_URL", env.str, "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL: expected redis://host:port/db, got {REDIS_URL!r}")
CELERY_BROKER_URL = _url(
    "CELERY_BROKER_URL", REDIS_URL or "filesystem://", ("filesystem", "redis", "rediss", "amqp", "memory")
)
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR),
        "data_folder_out": str(BROKER_DIR),
        "processed_folder": str(VAR_DIR / "broker-processed"),
        # kombu's default is ./control, relative to the working directory: keep it under var/.
        "control_folder": str(VAR_DIR / "broker-control"),
        "store_processed": False,
        # How long the worker sleeps when it cannot take a message: the queue is empty, or both pool
        # processes are busy (prefetch 1). kombu's 1 s capped the embedded worker at ~2 tasks/s, below
        # the demo's own traffic (one batch a second plus its deliveries): detection fell minutes behind.
        "polling_interval": 0.1,
    }
else:
    # Redis redelivers unacked tasks after visibility_timeout; our tasks are short, and retries
    # are scheduled in PostgreSQL by sweepers, never as long ETA tasks (see DESIGN 3.5).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "detect.*": {"queue": "detect"},
    "deliver.*": {"queue": "deliver"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "core.heartbeat", "schedule": 10.0},
    # Doorbell for ingest batches whose detect message was lost (the batch rows are the truth).
    "detect-sweep": {"task": "detect.sweep", "schedule": 5.0},
    # Doorbell for due and stuck deliveries (retries live in PostgreSQL, not in Celery ETAs).
    "deliver-sweep": {"task": "deliver.sweep", "schedule": 2.0},
    "alerts-escalate": {"task": "alerts.escalate", "schedule": 30.0},
    "alerts-auto-resolve": {"task": "alerts.auto_resolve", "schedule": 30.0},
    "alerts-unsuppress": {"task": "alerts.unsuppress", "schedule": 30.0},
    # Metric rules (apps.rules.metric_eval): each due rule is claimed, so two beats never double-evaluate.
    "rules-evaluate-metrics": {"task": "rules.evaluate_metrics", "schedule": 15.0},
    # Missed heartbeats (apps.ingest.heartbeats): each due heartbeat is claimed, so two beats raise one alert.
    "heartbeats-sweep": {"task": "heartbeats.sweep", "schedule": 15.0},
    # Tickets (auto-create, resolve comment/close) and automatic remediation runs (apps.actions.sweeps).
    "actions-sweep": {"task": "actions.sweep", "schedule": 15.0},
    # Self-monitoring and watchdog (apps.ops.self_monitoring); cron can run `manage.py system_checks` too.
    "system-checks": {"task": "system.checks", "schedule": 60.0},
    # Day partitions a week ahead of the event and attempt tables (PostgreSQL; apps.core.partitions),
    # whatever the clock did.
    "system-partitions": {"task": "system.partitions", "schedule": 3600.0},
    # Retention (apps.ops.retention); daily, off-peak. Idempotent, so cron may run it as well.
    "system-purge-expired": {"task": "system.purge_expired",
                             "schedule": crontab(hour=3, minute=17)},
}
# How old the newest worker heartbeat may be before /api/v1/health reports the worker down.
WORKER_HEARTBEAT_MAX_AGE = _positive_int("WORKER_HEARTBEAT_MAX_AGE", 60)

# --- Metrics, self-monitoring, retention (README "Operations") --------------------------------------
# Optional: /metrics then requires `Authorization: Bearer <token>` (tenant slugs are label values).
METRICS_BEARER_TOKEN = _read("METRICS_BEARER_TOKEN", env.str, "")
METRICS_STATEMENT_TIMEOUT_MS = _positive_int("METRICS_STATEMENT_TIMEOUT_MS", 5000)
# Above this many tenants the tenant label collapses to "_all" (bounded series count).
METRICS_TENANT_LABEL_LIMIT = _positive_int("METRICS_TENANT_LABEL_LIMIT", 100)
# apps.ops.folds: all-time counters count rows once they are older than the delay (their ids were
# allocated that long ago, so no open transaction can still add below them); scrapes fold at most
# this often per process.
METRICS_FOLD_DELAY_SECONDS = _positive_int("METRICS_FOLD_DELAY_SECONDS", 120)
METRICS_FOLD_EVERY_SECONDS = _positive_int("METRICS_FOLD_EVERY_SECONDS", 30)
# P1 when the first-attempt webhook success ratio over 15 min is below this, given enough attempts.
SELF_MONITOR_SUCCESS_THRESHOLD = _read("SELF_MONITOR_SUCCESS_THRESHOLD", env.float, 0.95)
SELF_MONITOR_MIN_ATTEMPTS = _positive_int("SELF_MONITOR_MIN_ATTEMPTS", 20)
# Governance alert when more webhook deliveries than this were downgraded in 24 h.
SELF_MONITOR_MAX_DOWNGRADES_PER_DAY = _positive_int("SELF_MONITOR_MAX_DOWNGRADES_PER_DAY", 20)
WATCHDOG_BATCH_PENDING_SECONDS = _positive_int("WATCHDOG_BATCH_PENDING_SECONDS", 300)
WATCHDOG_DELIVERY_OVERDUE_SECONDS = _positive_int("WATCHDOG_DELIVERY_OVERDUE_SECONDS", 300)
EVENT_RETENTION_DAYS = _positive_int("EVENT_RETENTION_DAYS", 90)
INGEST_BATCH_RETENTION_DAYS = _positive_int("INGEST_BATCH_RETENTION_DAYS", 7)
# The attempt log (each try's status, error, response excerpt); deliveries themselves are kept.
DELIVERY_ATTEMPT_RETENTION_DAYS = _positive_int("DELIVERY_ATTEMPT_RETENTION_DAYS", 90)
AUDIT_RETENTION_DAYS = _positive_int("AUDIT_RETENTION_DAYS", 180)

# --- Live stream (apps.stream, README "Live stream") ------------------------------------------------
def _positive_float(name: str, default: float) -> float:
    value = _read(name, env.float, default)
    if not value > 0:
        raise ImproperlyConfigured(f"{name}: must be a positive number, got {value}")
    return value


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


# Where the console's EventSource connects: a path on the console's own origin when a proxy routes it
# to the stream process (/api/v1/stream), an absolute URL of the stream process (`make run` sets
# http://127.0.0.1:8002/api/v1/stream), or empty (default: no stream process is known to run, so the
# console polls). An absolute URL's origin is added to the console's CSP connect-src.
STREAM_PUBLIC_URL = (_read("STREAM_PUBLIC_URL", env.str, "") or "").strip()
if STREAM_PUBLIC_URL and not STREAM_PUBLIC_URL.startswith(("/", "http://", "https://")):
    raise ImproperlyConfigured(f"STREAM_PUBLIC_URL: expected a path (/api/v1/stream), an http(s):// URL or "
                               f"nothing, got {STREAM_PUBLIC_URL!r}")
STREAM_CONNECT_ORIGIN = _origin(STREAM_PUBLIC_URL) if "://" in STREAM_PUBLIC_URL else ""
# Console origins allowed to read the stream cross-origin with their session cookie (CORS).
STREAM_ALLOWED_ORIGINS = [o.strip().rstrip("/") for o in _read("STREAM_ALLOWED_ORIGINS", env.list,
                                                                 [_origin(CONSOLE_BASE_URL)]) if o.strip()]
for _o in STREAM_ALLOWED_ORIGINS:
    if not _o.startswith(("http://", "https://")) or "/" in _o.split("://", 1)[1]:
        raise ImproperlyConfigured(f"STREAM_ALLOWED_ORIGINS: {_o!r} is not an origin (scheme://host[:port])")
STREAM_KEEPALIVE_SECONDS = _positive_float("STREAM_KEEPALIVE_SECONDS", 15.0)
# Without Redis (embedded default) the stream process polls the table this often.
STREAM_POLL_SECONDS = _positive_float("STREAM_POLL_SECONDS", 0.5)
# How long a hole in the event ids (a transaction still committing) holds later events back.
STREAM_GAP_GRACE_SECONDS = _positive_float("STREAM_GAP_GRACE_SECONDS", 1.0)
# Missed events replayed to a resuming client; past it the client gets `stream.reset` and reloads.
STREAM_REPLAY_MAX = _positive_int("STREAM_REPLAY_MAX", 1000)
# Events queued for one slow client before it is resynced from the database instead.
STREAM_MAX_PENDING = _positive_int("STREAM_MAX_PENDING", 10_000)
# A connection ends after this long; the client reconnects (and is authorized again).
STREAM_MAX_CONNECTION_SECONDS = _positive_int("STREAM_MAX_CONNECTION_SECONDS", 600)
STREAM_RETENTION_DAYS = _positive_int("STREAM_RETENTION_DAYS", 7)
# Redis pub/sub channels are server-wide (not per database number): deployments sharing one Redis
# server may give each its own channel.
STREAM_REDIS_CHANNEL = _read("STREAM_REDIS_CHANNEL", env.str, "alertcenter:events")

# --- Health map and diagnostic reports (README "Health map", "Diagnostic reports") --------------
# A plugin whose newest stored event (or registration, if none) is older than this shows as stale.
HEALTH_MAP_STALE_SECONDS = _positive_int("HEALTH_MAP_STALE_SECONDS", 900)
# A report holds the alert's trace lines from this long before first_seen to this long after last_seen.
DIAGNOSTIC_WINDOW_SECONDS = _positive_int("DIAGNOSTIC_WINDOW_SECONDS", 1800)
# Trace lines per report at most (the report says "truncated" past it).
DIAGNOSTIC_MAX_LINES = _positive_int("DIAGNOSTIC_MAX_LINES", 10_000)
# How long a signed report download link works.
DIAGNOSTIC_LINK_MAX_AGE_SECONDS = _positive_int("DIAGNOSTIC_LINK_MAX_AGE_SECONDS", 86_400)

CACHE_URL = _read("CACHE_URL", env.str, "") or (
    f"{REDIS_URL.rstrip('/')}" if REDIS_URL else f"filecache://{VAR_DIR / 'cache'}"
)
try:
    CACHES = {"default": environ.Env.cache_url_config(CACHE_URL)}
except Exception as exc:
    raise ImproperlyConfigured(f"CACHE_URL: invalid value {CACHE_URL!r} ({exc})") from exc

# --- Auth, API ----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed API token attempts per presented token prefix (ac_<prefix>_) per minute before further
# failures with that prefix are answered 429. A valid token is never refused.
AUTH_FAILURES_PER_MINUTE = _positive_int("AUTH_FAILURES_PER_MINUTE", 20)
# The same per client address, whatever the prefix: much higher, since behind NAT or a proxy one
# address carries many clients.
AUTH_FAILURES_PER_ADDRESS_PER_MINUTE = _positive_int("AUTH_FAILURES_PER_ADDRESS_PER_MINUTE",
                                                     10 * AUTH_FAILURES_PER_MINUTE)
# Seconds a web process keeps a token it authenticated (apps.tenants.tokens): one query fewer per
# request. A revocation, expiry change or tenant switch-off made in another process takes up to
# this long to reach this one (at once in the process that made it); 0 reads the token every time.
API_TOKEN_CACHE_SECONDS = _read("API_TOKEN_CACHE_SECONDS", env.float, 5.0)
if not 0 <= API_TOKEN_CACHE_SECONDS <= 60:
    raise ImproperlyConfigured(f"API_TOKEN_CACHE_SECONDS: must be between 0 and 60, got {API_TOKEN_CACHE_SECONDS}")
# Proxies whose X-Forwarded-For is believed (apps.core.client_ip); empty: REMOTE_ADDR is the client.
try:
    TRUSTED_PROXIES = [
        ipaddress.ip_network(n.strip(), strict=False) for n in _read("TRUSTED_PROXIES", env.list, []) if n.strip()
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc} (expected addresses or CIDR networks, comma-separated)") from exc
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# JSON request bodies nested deeper than this are refused with 400 (apps.core.parsers).
API_JSON_MAX_DEPTH = _positive_int("API_JSON_MAX_DEPTH", 64)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.tenants.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.permissions.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.DepthLimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Alert Center API",
    "DESCRIPTION": "Log intake, alerts, webhooks and rules. Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "REDOC_DIST": "SIDECAR",
    # One stable name per choice set in the schema (clients generate types from these names).
    "ENUM_NAME_OVERRIDES": {
        "SeverityEnum": "apps.core.vocabulary.Severity",
        "SeverityValueEnum": "apps.core.vocabulary.SEVERITIES",
        "AlertStateEnum": "apps.alerts.models.AlertState",
        "AlertDeliveryStateEnum": "apps.core.vocabulary.AlertDeliveryState",
        "DeliveryStateEnum": "apps.core.vocabulary.DeliveryState",
        "ChannelKindEnum": "apps.delivery.models.CHANNEL_KIND_CHOICES",
        "TicketBridgeKindEnum": "apps.actions.models.TicketBridge.Kind",
    },
}

# --- Ingest -------------------------------------------------------------------------------------
INGEST_MAX_BYTES = _positive_int("INGEST_MAX_BYTES", 5 * 1024 * 1024)
INGEST_MAX_EVENTS = _positive_int("INGEST_MAX_EVENTS", 10_000)
# Per-tenant quota: events per second, averaged over a 10 s window; over it the API answers 429.
INGEST_TENANT_EVENTS_PER_SECOND = _positive_int("INGEST_TENANT_EVENTS_PER_SECOND", 50_000)
# Detection backlog (events in pending batches) above which intake sheds load with 429.
INGEST_MAX_PENDING_EVENTS = _positive_int("INGEST_MAX_PENDING_EVENTS", 500_000)
INGEST_MAX_PAST_SECONDS = _positive_int("INGEST_MAX_PAST_SECONDS", 7 * 24 * 3600)
INGEST_MAX_FUTURE_SECONDS = _positive_int("INGEST_MAX_FUTURE_SECONDS", 300)
# A batch still unprocessed after this many seconds is re-enqueued by the sweeper.
INGEST_SWEEP_AFTER_SECONDS = _positive_int("INGEST_SWEEP_AFTER_SECONDS", 30)
# A detect task takes up to this many log batches in one transaction when more are waiting (a
# backlog: received within a second of its own): per-batch statements, commit and recording are
# then shared (bench/storm.py). 1: one batch per task.
DETECT_COALESCE_BATCHES = _positive_int("DETECT_COALESCE_BATCHES", 4)
MASKING_RULES_FILE = Path(_read("MASKING_RULES_FILE", env.str, str(BASE_DIR / "fixtures" / "masking_rules.yaml")))
# Plugins a tenant may have (auto-registered on ingest); events of new plugins past it are rejected.
# Tenant.max_plugins overrides it per tenant.
TENANT_MAX_PLUGINS = _positive_int("TENANT_MAX_PLUGINS", 1000)
# CPU milliseconds one request's masking may use; past it the body is refused with 413.
INGEST_MASKING_BUDGET_MS = _positive_int("INGEST_MASKING_BUDGET_MS", 1000)

# --- Metrics intake and metric rules (README "Metrics and metric rules") ---------------------------
# Series (metric name + label set) a tenant may have; samples of new series past it are rejected.
METRICS_MAX_SERIES_PER_TENANT = _positive_int("METRICS_MAX_SERIES_PER_TENANT", 10_000)
# Samples in one POST /api/v1/metrics (a node_exporter scrape has about 1,000-3,000).
METRICS_MAX_SAMPLES = _positive_int("METRICS_MAX_SAMPLES", 50_000)
# Per-minute rollups older than this are purged, and series with none left (purge_expired); never
# less than the metric rules reach back (8 days: a seasonal baseline, an absence's 7 days + 1 day).
METRICS_RETENTION_DAYS = _positive_int("METRICS_RETENTION_DAYS", 9)
# How often each metric rule is evaluated (beat rings every 15 s; rules are claimed per evaluation).
METRIC_RULES_EVAL_SECONDS = _positive_int("METRIC_RULES_EVAL_SECONDS", 15)

# --- Heartbeats (README "Heartbeats") ------------------------------------------------------------


def _duration(name: str, default: str) -> int:
    """A duration in the one spelling every setting and rule uses ("5m", "26h", "300"), as seconds."""
    from apps.core.vocabulary import parse_duration

    raw = _read(name, env.str, default)
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


# A heartbeat's timeout when its first ping names none; pings may name 1 minute to 30 days.
HEARTBEAT_DEFAULT_TIMEOUT = _duration("HEARTBEAT_DEFAULT_TIMEOUT", "5m")
HEARTBEAT_DEFAULT_GRACE = _duration("HEARTBEAT_DEFAULT_GRACE", "1m")
HEARTBEAT_MIN_TIMEOUT = _duration("HEARTBEAT_MIN_TIMEOUT", "1m")
HEARTBEAT_MAX_TIMEOUT = _duration("HEARTBEAT_MAX_TIMEOUT", "30d")
if not 0 < HEARTBEAT_MIN_TIMEOUT <= HEARTBEAT_DEFAULT_TIMEOUT <= HEARTBEAT_MAX_TIMEOUT:
    raise ImproperlyConfigured(
        f"HEARTBEAT_DEFAULT_TIMEOUT: {HEARTBEAT_DEFAULT_TIMEOUT} s must lie between HEARTBEAT_MIN_TIMEOUT "
        f"({HEARTBEAT_MIN_TIMEOUT} s, > 0) and HEARTBEAT_MAX_TIMEOUT ({HEARTBEAT_MAX_TIMEOUT} s)")
# Heartbeats a tenant may have; a first ping past it is refused with 422.
HEARTBEAT_MAX_PER_TENANT = _positive_int("HEARTBEAT_MAX_PER_TENANT", 1000)

# --- Inbound integrations (Alertmanager, Grafana, events) --------------------------------------
# Source severity label value -> our severity ("name=severity,..."); values not listed map to warning.
ALERTMANAGER_SEVERITY_MAP = _read("ALERTMANAGER_SEVERITY_MAP", env.dict, {
    "critical": "critical", "warning": "warning", "info": "info", "page": "emergency", "error": "critical"})
_bad_severities = sorted(f"{k}={v}" for k, v in ALERTMANAGER_SEVERITY_MAP.items()
                         if v not in ("info", "warning", "critical", "emergency"))
if _bad_severities:
    raise ImproperlyConfigured(f"ALERTMANAGER_SEVERITY_MAP: {', '.join(_bad_severities)}: the severity must be "
                               "one of info, warning, critical, emergency")
ALERTMANAGER_SEVERITY_MAP = {k.strip().lower(): v for k, v in ALERTMANAGER_SEVERITY_MAP.items()}
# Labels naming an inbound alert's plugin, first present wins (none present: no plugin).
INTEGRATIONS_PLUGIN_LABELS = _read("INTEGRATIONS_PLUGIN_LABELS", env.list, ["job", "service"])
# A signed webhook's timestamp (when a timestamp header is configured) may be this far off our clock.
INTEGRATIONS_SIGNATURE_MAX_SKEW_SECONDS = _positive_int("INTEGRATIONS_SIGNATURE_MAX_SKEW_SECONDS", 300)

# A rule pattern whose compiled RE2 program is bigger than this is refused at save time (API, admin,
# sync_rules): matching cost grows with program size on every line (apps.rules.spec).
RULE_PATTERN_MAX_PROGRAM_SIZE = _positive_int("RULE_PATTERN_MAX_PROGRAM_SIZE", 500)

# --- Alerts -------------------------------------------------------------------------------------
# A resolved alert whose fingerprint fires again within this many seconds is reopened (same id and
# timeline, reopened_count + 1) instead of raising a new alert; 0 turns reopening off.
ALERT_REOPEN_WINDOW_SECONDS = _read("ALERT_REOPEN_WINDOW_SECONDS", env.int, 3600)
if ALERT_REOPEN_WINDOW_SECONDS < 0:
    raise ImproperlyConfigured(f"ALERT_REOPEN_WINDOW_SECONDS: must be >= 0, got {ALERT_REOPEN_WINDOW_SECONDS}")
# Alert-storm guard: new alerts per tenant per detect batch and per minute; past either, a rule's
# further new alerts are folded into one "N more alerts suppressed" alert per (tenant, rule).
ALERTS_NEW_PER_BATCH_MAX = _positive_int("ALERTS_NEW_PER_BATCH_MAX", 100)
ALERTS_NEW_PER_MINUTE_MAX = _positive_int("ALERTS_NEW_PER_MINUTE_MAX", 300)

# --- Delivery -----------------------------------------------------------------------------------
try:
    WEBHOOK_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n.strip(), strict=False)
        for n in _read("WEBHOOK_ALLOWED_NETWORKS", env.list, [])
        if n.strip()
    ]
except ValueError as exc:
    raise ImproperlyConfigured(f"WEBHOOK_ALLOWED_NETWORKS: {exc}") from exc
WEBHOOK_ALLOW_HTTP = _bool("WEBHOOK_ALLOW_HTTP", False)
# Total wall-clock budget of one webhook send (DNS check, connect, TLS, headers, body), not per read.
WEBHOOK_TIMEOUT_SECONDS = _read("WEBHOOK_TIMEOUT_SECONDS", env.float, 10.0)
# Response bytes read from a webhook receiver or the SMS provider (the attempt log keeps 1 KiB).
DELIVERY_MAX_RESPONSE_BYTES = _positive_int("DELIVERY_MAX_RESPONSE_BYTES", 64 * 1024)
WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS = _positive_int("WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS", 24 * 3600)
# Comma-separated retry schedule in seconds (the last entry repeats until DELIVERY_MAX_AGE).
DELIVERY_RETRY_SCHEDULE = [int(s) for s in _read("DELIVERY_RETRY_SCHEDULE", env.list, ["10", "30", "120", "600", "1800", "3600"])]
DELIVERY_MAX_AGE_SECONDS = _positive_int("DELIVERY_MAX_AGE_SECONDS", 24 * 3600)
DELIVERY_DOWNGRADE_AFTER_FAILURES = _positive_int("DELIVERY_DOWNGRADE_AFTER_FAILURES", 3)
# Deliveries rung in one transaction go out as deliver.batch tasks of this many (claimed, sent
# concurrently, recorded in one transaction). 100 = a detection batch's new alerts in one task: the
# per-batch statements and the task itself are then spread over 4x the rows of the former 25
# (bench/storm.py: worker CPU per alert -20 %, N = 10,000 p99 16 s -> 12 s).
DELIVERY_BATCH_SIZE = _positive_int("DELIVERY_BATCH_SIZE", 100)
DELIVERY_CLAIM_LEASE_SECONDS = _positive_int("DELIVERY_CLAIM_LEASE_SECONDS", 60)
# A detect task sends the first attempt of the webhook deliveries it writes itself, right after its
# commit: the rows are written claimed (SENDING, its claim token) and go out without a deliver task,
# a broker hop, a claim UPDATE and a second read of rows and endpoints (bench/storm.py). Off: every
# first attempt is a deliver task, for detect workers that must not make outbound connections.
DELIVERY_SEND_FROM_DETECT = _bool("DELIVERY_SEND_FROM_DETECT", True)
# A deliver task waits this long for its batch's sends; the ones still running are recorded later by
# the process's straggler thread, so a receiver that never answers holds its own rows, not the
# worker. A destination holding this many stragglers in a process gets no new sends there until
# they end (its rows wait one send timeout).
DELIVERY_STRAGGLER_SECONDS = _read("DELIVERY_STRAGGLER_SECONDS", env.float, 0.5)
DELIVERY_STRAGGLERS_PER_DESTINATION = _positive_int("DELIVERY_STRAGGLERS_PER_DESTINATION", 2)
# Sends in flight at once to a downgraded webhook endpoint (the probes of a circuit breaker): its
# other deliveries wait parked (their fallback went out already) until one succeeds, which restores
# the endpoint and sends the waiting ones.
DELIVERY_DOWNGRADED_IN_FLIGHT = _positive_int("DELIVERY_DOWNGRADED_IN_FLIGHT", 1)
# A downgraded endpoint is probed again after each failed probe on the retry schedule, waiting at
# most this long (a receiver's longer Retry-After is honoured): how soon a receiver that is back
# gets its waiting alerts, against how often a dead one is knocked on.
DELIVERY_PROBE_MAX_INTERVAL_SECONDS = _positive_int("DELIVERY_PROBE_MAX_INTERVAL_SECONDS", 60)
# Sends of one deliver batch in flight at once to one endpoint or channel: a batch of 100 rows for
# one small receiver must not open 24 connections to it at once (a server with a short listen
# backlog resets the overflow; found with bench/chaos.py).
DELIVERY_CONCURRENCY_PER_DESTINATION = _positive_int("DELIVERY_CONCURRENCY_PER_DESTINATION", 8)
# Configured channels (Slack, Teams, PagerDuty, Opsgenie, email lists, SMS numbers): total budget of one
# send, and messages per minute per channel unless the channel sets its own (the excess waits).
CHANNEL_TIMEOUT_SECONDS = _read("CHANNEL_TIMEOUT_SECONDS", env.float, 10.0)
CHANNEL_RATE_LIMITS = {
    "slack": _positive_int("CHANNEL_RATE_LIMIT_SLACK", 60),  # Slack allows about 1 message/s per webhook
    "teams": _positive_int("CHANNEL_RATE_LIMIT_TEAMS", 60),
    "pagerduty": _positive_int("CHANNEL_RATE_LIMIT_PAGERDUTY", 120),  # Events API: 120/min per routing key
    "opsgenie": _positive_int("CHANNEL_RATE_LIMIT_OPSGENIE", 600),
    "email": _positive_int("CHANNEL_RATE_LIMIT_EMAIL", 120),
    "sms": _positive_int("CHANNEL_RATE_LIMIT_SMS", 60),
}
# Keys that encrypt webhook secrets at rest; the first encrypts, all decrypt (rotation).
# Defaults to a key derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = _read("FIELD_ENCRYPTION_KEYS", env.list, []) or [SECRET_KEY]

# --- Tickets and remediation (apps.actions) ------------------------------------------------------
# Tracker and runbook URLs pass the same SSRF guard as webhooks (WEBHOOK_ALLOWED_NETWORKS/ALLOW_HTTP).
# Total budget of one tracker or runbook call (DNS check to last byte read).
ACTIONS_TIMEOUT_SECONDS = _read("ACTIONS_TIMEOUT_SECONDS", env.float, 10.0)
if ACTIONS_TIMEOUT_SECONDS <= 0:
    raise ImproperlyConfigured(f"ACTIONS_TIMEOUT_SECONDS: must be > 0, got {ACTIONS_TIMEOUT_SECONDS}")
# The sweep only looks at alerts created this recently (and after the bridge/action was set up).
ACTIONS_SWEEP_LOOKBACK_SECONDS = _positive_int("ACTIONS_SWEEP_LOOKBACK_SECONDS", 3600)
# Tries per ticket creation or resolve comment before the sweep gives up (last_error keeps why).
TICKETS_MAX_ATTEMPTS = _positive_int("TICKETS_MAX_ATTEMPTS", 5)

EMAIL_URL = _read("EMAIL_URL", env.str, "consolemail://" if DEBUG else "smtp://localhost:25")
try:
    vars().update(environ.Env.email_url_config(EMAIL_URL))
except Exception as exc:
    raise ImproperlyConfigured(f"EMAIL_URL: invalid value {EMAIL_URL!r} ({exc})") from exc
# Total budget of one SMTP session (connect, greeting, TLS, login, DATA), not per read.
EMAIL_TIMEOUT = _read("EMAIL_TIMEOUT_SECONDS", env.float, 10.0)
DEFAULT_FROM_EMAIL = _read("DEFAULT_FROM_EMAIL", env.str, "Alert Center <alerts@localhost>")
EMAIL_ENABLED = _bool("EMAIL_ENABLED", True)
SMS_ENABLED = _bool("SMS_ENABLED", True)
SMS_API_URL = _read("SMS_API_URL", env.str, "").rstrip("/")
SMS_ACCOUNT_SID = _read("SMS_ACCOUNT_SID", env.str, "")
SMS_AUTH_TOKEN = _read("SMS_AUTH_TOKEN", env.str, "")
SMS_FROM = _read("SMS_FROM", env.str, "")
# Total budget of one SMS provider request (connect, headers, body).
SMS_TIMEOUT_SECONDS = _read("SMS_TIMEOUT_SECONDS", env.float, 10.0)

# --- i18n, static ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve from app folders when collectstatic has not run
STATIC_ROOT = Path(_read("STATIC_ROOT", env.str, str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed files once collectstatic has run (the Docker image); before that
        # (tests, a source checkout) plain names served from the app folders.
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if (STATIC_ROOT / "staticfiles.json").exists()
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Security (production hardening; `manage.py check --deploy` is clean with DEBUG off) ------------
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE", not DEBUG and SECURE_SSL_REDIRECT)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = _read("SECURE_HSTS_SECONDS", env.int, 0)
# Opt-in: they bind every subdomain (and, once preloaded, browsers) to HTTPS for a long time.
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# apps.core.csp: no inline script/style, nothing from other origins, no framing.
# Empty: the default policy in that module.
CONTENT_SECURITY_POLICY = _read("CONTENT_SECURITY_POLICY", env.str, "")
CSP_REPORT_ONLY = _bool("CSP_REPORT_ONLY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _bool("BEHIND_TLS_PROXY", False) else None

# --- Logging: one JSON object per line ------------------------------------------------------------
LOG_LEVEL = _read("LOG_LEVEL", env.str, "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL: expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOG_FORMAT = _read("LOG_FORMAT", env.str, "json")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: expected json or text, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "apps.core.logging.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
