"""Local stand-ins for Slack, Teams (Workflows), PagerDuty (Events API v2) and Opsgenie (Alert API):
threaded HTTP servers on 127.0.0.1 that answer as each vendor documents.

Use them as context managers; each keeps every request (``requests``: path, headers in lower case,
raw body, parsed JSON) and answers either by the vendor's own rules (``default``: validate the
request, then succeed, keeping the vendor-side state: PagerDuty incidents by dedup_key, Opsgenie
alerts by alias) or, while scripted answers remain, with the next one::

    with SlackServer() as slack:
        slack.script("rate_limited", "ok")       # a 429 with Retry-After, then 200 "ok"
        ... send to slack.url ...
        assert slack.requests[1].json["text"]

Answers are names from the class's ``ANSWERS`` (vendor-documented status, body and headers) or an
``Answer``; ``"hang"`` never answers (until the server closes), for deadline tests.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.http import PeerServer


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes | str | dict = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict):
            return json.dumps(self.body).encode(), "application/json"
        data = self.body.encode() if isinstance(self.body, str) else self.body
        return data, "text/plain; charset=utf-8"


HANG = Answer(0, hang=True)


@dataclass
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes
    at: float
    client_port: int = 0  # the sender's port: one port across requests = one kept connection

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}


class VendorServer:
    ANSWERS: dict[str, Answer] = {"hang": HANG}

    def __init__(self, *script: str | Answer) -> None:
        self.requests: list[Request] = []
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.script(*script)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # as the vendors' APIs: connections are kept between requests
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                                  time.monotonic(), self.client_address[1])
                with server._lock:
                    server.requests.append(request)
                    scripted = server._script.pop(0) if server._script else None
                    answer = scripted or server.default(request)
                if answer.hang:
                    server._closing.wait()
                    return
                data, content_type = answer.encoded()
                self.send_response(answer.status)
                headers = {"Content-Type": content_type, **answer.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = PeerServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"

    def script(self, *answers: str | Answer) -> None:
        """Answer the next requests with these, in order; afterwards the vendor's own rules apply."""
        with self._lock:
            self._script = [a if isinstance(a, Answer) else self.ANSWERS[a] for a in answers]

    def default(self, request: Request) -> Answer:
        raise NotImplementedError

    def __enter__(self) -> VendorServer:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


def _slack(status: int, text: str, **headers: str) -> Answer:
    return Answer(status, text, {"Content-Type": "text/html", **headers})


class SlackServer(VendorServer):
    """Incoming webhooks (api.slack.com/messaging/webhooks#handling_errors): 200 ``ok``; errors are
    plain-text codes. ``url`` is the webhook URL; another token answers 403 ``invalid_token``,
    another path 404 ``no_service``; a body that is not JSON 400 ``invalid_payload``, one without
    ``text`` or ``blocks`` 400 ``no_text``."""

    TOKEN_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    ANSWERS = {
        "hang": HANG,
        "ok": _slack(200, "ok"),
        "invalid_payload": _slack(400, "invalid_payload"),
        "no_text": _slack(400, "no_text"),
        "action_prohibited": _slack(403, "action_prohibited"),
        "invalid_token": _slack(403, "invalid_token"),
        "channel_not_found": _slack(404, "channel_not_found"),
        "no_service": _slack(404, "no_service"),
        "channel_is_archived": _slack(410, "channel_is_archived"),
        "rate_limited": _slack(429, "rate_limited", **{"Retry-After": "7"}),
        "rollup_error": _slack(500, "rollup_error"),
    }

    @property
    def url(self) -> str:
        return self.base_url + self.TOKEN_PATH

    def default(self, request: Request) -> Answer:
        if request.path != self.TOKEN_PATH:
            prefix = self.TOKEN_PATH.rsplit("/", 1)[0]
            return self.ANSWERS["invalid_token" if request.path.startswith(prefix + "/") else "no_service"]
        data = request.json
        if not isinstance(data, dict):
            return self.ANSWERS["invalid_payload"]
        if not data.get("text") and not data.get("blocks"):
            return self.ANSWERS["no_text"]
        return self.ANSWERS["ok"]


UPSTREAM_429_TEXT = ("Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 "
                     "with ContextId tcid=0,server=msgapi-production-eus-azsc2-4-170,cv=deadbeef.0..")


class TeamsServer(VendorServer):
    """A Workflows "when a webhook request is received" trigger: 202 with an empty body for a valid
    envelope; 400 (Logic Apps error JSON) when ``type`` is not "message" or no adaptive-card
    attachment is there; 401 for a wrong ``sig``. ``upstream_429`` is the legacy connector's 200
    whose body relays Teams' rate limit."""

    SIG = "s3cr3t-signature"
    ANSWERS = {
        "hang": HANG,
        "accepted": Answer(202),
        "ok_legacy": Answer(200, "1"),
        "upstream_429": Answer(200, UPSTREAM_429_TEXT),
        "bad_request": Answer(400, {"error": {"code": "InvalidRequestContent",
                                              "message": "The request content is not valid."}}),
        "unauthorized": Answer(401, {"error": {"code": "DirectApiInvalidAuthorizationSignature",
                                               "message": "The provided authorization signature is invalid."}}),
        "request_timeout": Answer(408, ""),
        "too_many_requests": Answer(429, {"error": {"code": "WorkflowRequestsThrottled",
                                                    "message": "Rate limit is exceeded."}}, {"Retry-After": "12"}),
        "bad_gateway": Answer(502, ""),
    }

    @property
    def url(self) -> str:
        return (f"{self.base_url}/workflows/0123abcd/triggers/manual/paths/invoke?api-version=2016-06-01"
                f"&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.SIG}")

    def default(self, request: Request) -> Answer:
        if request.query.get("sig") != self.SIG:
            return self.ANSWERS["unauthorized"]
        data = request.json
        attachments = data.get("attachments") if isinstance(data, dict) else None
        if (not isinstance(data, dict) or data.get("type") != "message" or not isinstance(attachments, list)
                or not attachments
                or any(a.get("contentType") != "application/vnd.microsoft.card.adaptive" for a in attachments)):
            return self.ANSWERS["bad_request"]
        return self.ANSWERS["accepted"]


PD_ROUTING_KEY = "0123456789abcdef0123456789abcdef"  # 32 characters, like an integration key
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def _pd_invalid(*errors: str) -> Answer:
    return Answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)})


class PagerDutyServer(VendorServer):
    """Events API v2 ``POST /v2/enqueue``: 202 ``{"status": "success", "message": "Event processed",
    "dedup_key": ...}``; 400 invalid event (unknown routing key, bad event_action, missing
    summary/source/severity on trigger, dedup_key over 255); keeps ``incidents`` {dedup_key: state}
    (trigger -> triggered, acknowledge -> acknowledged, resolve -> resolved; ack/resolve of an unknown
    key is dropped, as PagerDuty does) and ``events`` (the accepted events in order)."""

    ANSWERS = {
        "hang": HANG,
        "accepted": Answer(202, {"status": "success", "message": "Event processed", "dedup_key": "scripted"}),
        "invalid_event": _pd_invalid("'payload.summary' is missing or blank"),
        "rate_limited": Answer(429, {"status": "throttle event", "message": "Requests for this service are arriving "
                                     "too quickly. Please retry later."}),
        "rate_limited_retry_after": Answer(429, {"status": "throttle event"}, {"Retry-After": "4"}),
        "server_error": Answer(500, ""),
        "unavailable": Answer(503, "", {"Retry-After": "9"}),
    }

    def __init__(self, *script: str | Answer, routing_key: str = PD_ROUTING_KEY) -> None:
        super().__init__(*script)
        self.routing_key = routing_key
        self.incidents: dict[str, str] = {}
        self.events: list[dict] = []

    @property
    def url(self) -> str:
        return self.base_url

    def default(self, request: Request) -> Answer:
        event = request.json
        if request.route != "/v2/enqueue":
            return Answer(404, {"status": "not found"})
        if not isinstance(event, dict):
            return _pd_invalid("Event object is not valid JSON")
        if event.get("routing_key") != self.routing_key:
            return _pd_invalid("Invalid routing key")
        action, key = event.get("event_action"), event.get("dedup_key") or str(uuid.uuid4())
        if action not in ("trigger", "acknowledge", "resolve"):
            return _pd_invalid("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
        if len(key) > 255:
            return _pd_invalid("'dedup_key' is too long (max 255 characters)")
        if action == "trigger":
            payload = event.get("payload") or {}
            errors = [f"'payload.{f}' is missing or blank" for f in ("summary", "source", "severity") if not payload.get(f)]
            if payload.get("severity") and payload["severity"] not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
            if len(payload.get("summary") or "") > 1024:
                errors.append("'payload.summary' is too long (max 1024 characters)")
            if errors:
                return _pd_invalid(*errors)
            self.incidents[key] = "triggered"
        elif key in self.incidents and self.incidents[key] != "resolved":
            self.incidents[key] = {"acknowledge": "acknowledged", "resolve": "resolved"}[action]
        self.events.append(event)
        return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": key})


OPSGENIE_KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"


def _og(status: int, message: str, **extra: Any) -> Answer:
    return Answer(status, {"message": message, **extra, "took": 0.002, "requestId": str(uuid.uuid4())})


class OpsgenieServer(VendorServer):
    """Alert API v2: ``POST /v2/alerts`` (create), ``/v2/alerts/{id}/acknowledge`` and
    ``/v2/alerts/{id}/close`` with ``identifierType``; ``Authorization: GenieKey <key>``. Success is
    202 ``{"result": "Request will be processed", "took", "requestId"}``; a wrong key 401; a create
    without ``message`` (or over 130 characters) 422 with ``errors``; keeps ``alerts``
    {alias: {"status": open|closed, "acknowledged": bool, "count", "message"}} and ``actions``."""

    ANSWERS = {
        "hang": HANG,
        "accepted": Answer(202, {"result": "Request will be processed", "took": 0.1, "requestId": "scripted"}),
        "bad_request": _og(400, "Invalid request"),
        "unauthorized": _og(401, "Key format is not valid!"),
        "forbidden": _og(403, "You are not authorized for this operation"),
        "not_found": _og(404, "Alert with id [x] does not exist"),
        "unprocessable": _og(422, "Request body is not processable. Please check the errors.",
                             errors={"message": "Message can not be empty."}),
        "rate_limited": _og(429, "You are making too many requests! To avoid errors, we recommend you limit requests."),
        "rate_limited_retry_after": Answer(429, {"message": "Too many requests"}, {"Retry-After": "5"}),
        "server_error": _og(500, "Internal Server Error"),
    }

    def __init__(self, *script: str | Answer, api_key: str = OPSGENIE_KEY) -> None:
        super().__init__(*script)
        self.api_key = api_key
        self.alerts: dict[str, dict] = {}
        self.actions: list[tuple[str, str]] = []  # (action, alias)

    @property
    def url(self) -> str:
        return self.base_url

    def default(self, request: Request) -> Answer:
        if request.headers.get("authorization") != f"GenieKey {self.api_key}":
            return self.ANSWERS["unauthorized"]
        data = request.json
        if not isinstance(data, dict):
            return self.ANSWERS["bad_request"]
        parts = request.route.strip("/").split("/")
        if parts == ["v2", "alerts"]:
            message = data.get("message") or ""
            if not message or len(message) > 130:
                why = "Message can not be empty." if not message else "Message length should not exceed 130 characters."
                return _og(422, "Request body is not processable. Please check the errors.", errors={"message": why})
            alias = data.get("alias") or str(uuid.uuid4())
            known = self.alerts.get(alias)
            if known and known["status"] == "open":
                known["count"] += 1  # Opsgenie deduplicates an open alias
            else:
                self.alerts[alias] = {"status": "open", "acknowledged": False, "count": 1, "message": message}
            return self._accepted("create", alias)
        if len(parts) == 4 and parts[:2] == ["v2", "alerts"] and parts[3] in ("acknowledge", "close"):
            if request.query.get("identifierType", "id") != "alias":
                return self.ANSWERS["bad_request"]
            alias, action = unquote(parts[2]), parts[3]
            if alias in self.alerts:  # unknown aliases fail later in the async request, not here
                if action == "close":
                    self.alerts[alias]["status"] = "closed"
                else:
                    self.alerts[alias]["acknowledged"] = True
            return self._accepted(action, alias)
        return self.ANSWERS["not_found"]

    def _accepted(self, action: str, alias: str) -> Answer:
        self.actions.append((action, alias))
        return Answer(202, {"result": "Request will be processed", "took": 0.012, "requestId": str(uuid.uuid4())})
