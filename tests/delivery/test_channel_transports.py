"""Channel transports (apps.delivery.transports.channels) against local servers that answer as
Slack, Teams, PagerDuty and Opsgenie document (tests/delivery/vendors.py), plus email and SMS."""
from __future__ import annotations

import time
from email import message_from_bytes
from ipaddress import ip_network

import pytest

from apps.delivery.transports import TransportError
from apps.delivery.transports.channels import (
    CHANNEL_KINDS,
    CONFIG_FIELDS,
    ChannelRequest,
    render,
    sample_alert,
    send,
    validate_config,
    validate_template,
)

from .peers import SmsServer, SmtpServer, peer_settings
from .vendors import (
    OPSGENIE_KEY,
    PD_ROUTING_KEY,
    Answer,
    OpsgenieServer,
    PagerDutyServer,
    SlackServer,
    TeamsServer,
)

URL = "https://alerts.example.com/alerts/12345"
DEDUP = "alertcenter-acme-12345"
VENDOR_KINDS = ("slack", "teams", "pagerduty", "opsgenie")


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = [ip_network("127.0.0.0/8")]
    settings.WEBHOOK_ALLOW_HTTP = False


def server_for(kind: str, *script: str | Answer):
    return {"slack": SlackServer, "teams": TeamsServer, "pagerduty": PagerDutyServer, "opsgenie": OpsgenieServer}[kind](*script)


def config_for(kind: str, server) -> dict:
    return {"slack": {"webhook_url": server.url}, "teams": {"webhook_url": server.url},
            "pagerduty": {"routing_key": PD_ROUTING_KEY, "base_url": server.url},
            "opsgenie": {"api_key": OPSGENIE_KEY, "base_url": server.url}}[kind]


def triggered(kind: str, **fields) -> ChannelRequest:
    request = render(kind, "alert.triggered", {**sample_alert(), **fields})
    assert request is not None
    return request


def updated(kind: str, state: str, **fields) -> ChannelRequest | None:
    alert = {**sample_alert(), "state": state, **fields}
    return render(kind, "alert.updated", alert, changes={"state": state})


# --- rendered payloads ---------------------------------------------------------------------------


def test_slack_payload_is_text_and_blocks():
    request = triggered("slack")
    assert request.path == ""
    assert request.payload == {
        "text": "[CRITICAL] Payment errors above 5% for 5 minutes",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[CRITICAL] Payment errors above 5% for 5 minutes",
                                        "emoji": True}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Severity*\nCRITICAL"}, {"type": "mrkdwn", "text": "*Tenant*\nacme"},
                {"type": "mrkdwn", "text": "*Plugin*\ncheckout"}, {"type": "mrkdwn", "text": "*Occurrences*\n42"},
            ]},
            {"type": "section", "text": {"type": "mrkdwn", "text": (
                "42 errors in 5 minutes on checkout (threshold 10).\n\n*Recommended action:* Check the payment "
                "provider status and roll back the last deploy.")}},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
                                                                          "text": "Open in Alert Center"},
                                              "url": URL, "action_id": "open_alert"}]},
        ],
    }


def test_slack_escapes_alert_text_but_not_template_markup():
    request = render("slack", "alert.triggered", {**sample_alert(), "summary": "a<b> & <!channel>"},
                     templates={"body": "<{{ url }}|Open> {{ summary }}"})
    assert request.payload["blocks"][2]["text"]["text"] == f"<{URL}|Open> a&lt;b&gt; &amp; &lt;!channel&gt;"


def test_teams_payload_is_the_workflows_adaptive_card_envelope():
    request = triggered("teams", summary="*bold* [x](https://evil.example)")
    assert request.path == ""
    card = request.payload["attachments"][0]["content"]
    assert request.payload == {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    assert {k: card[k] for k in ("$schema", "type", "version")} == {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4"}
    title, facts, body = card["body"]
    assert title == {"type": "TextBlock", "text": "[CRITICAL] Payment errors above 5% for 5 minutes",
                     "weight": "Bolder", "size": "Medium", "wrap": True, "color": "Attention"}
    assert facts == {"type": "FactSet", "facts": [
        {"title": "Severity", "value": "CRITICAL"}, {"title": "Tenant", "value": "acme"},
        {"title": "Plugin", "value": "checkout"}, {"title": "Occurrences", "value": "42"},
        {"title": "State", "value": "OPEN"}]}
    # Markdown in alert text is shown, not interpreted: no bold, no injected link.
    assert body["text"].startswith(r"\*bold\* \[x\]\(https://evil.example\)")
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open in Alert Center", "url": URL}]


def test_pagerduty_trigger_event_fields():
    request = triggered("pagerduty")
    assert request.path == "/v2/enqueue"
    assert "routing_key" not in request.payload
    payload = request.payload["payload"]
    assert {k: v for k, v in request.payload.items() if k != "payload"} == {
        "event_action": "trigger", "dedup_key": DEDUP, "links": [{"href": URL, "text": "Open in Alert Center"}],
        "client": "Alert Center", "client_url": URL}
    assert {k: v for k, v in payload.items() if k != "custom_details"} == {
        "summary": "[CRITICAL] acme/checkout: Payment errors above 5% for 5 minutes", "source": "web-1",
        "severity": "error", "timestamp": "2025-01-01T10:05:00+00:00", "component": "checkout", "group": "acme",
        "class": "payment-errors"}
    details = payload["custom_details"]
    assert details["count"] == 42 and details["labels"] == {"env": "prod", "host": "web-1"}
    assert details["annotations"] == {"runbook_url": "https://runbooks.example.com/payments"}
    assert (details["value"], details["threshold"], details["rule"]) == (42.0, 10.0, "payment-errors")
    assert details["description"].startswith("42 errors in 5 minutes")


@pytest.mark.parametrize(("ours", "theirs"), [("emergency", "critical"), ("critical", "error"),
                                              ("warning", "warning"), ("info", "info")])
def test_pagerduty_severity_mapping(ours, theirs):
    assert triggered("pagerduty", severity=ours).payload["payload"]["severity"] == theirs


def test_pagerduty_summary_is_cut_to_1024():
    summary = triggered("pagerduty", title="x" * 5000).payload["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


def test_pagerduty_acknowledge_and_resolve_carry_only_the_dedup_key():
    assert updated("pagerduty", "ACKNOWLEDGED").payload == {"event_action": "acknowledge", "dedup_key": DEDUP}
    assert updated("pagerduty", "RESOLVED").payload == {"event_action": "resolve", "dedup_key": DEDUP}
    reopened = render("pagerduty", "alert.updated", sample_alert(), changes={"state": "OPEN", "reopened": True})
    assert reopened.payload["event_action"] == "trigger"


def test_opsgenie_create_payload():
    request = triggered("opsgenie", title="t" * 300)
    assert request.path == "/v2/alerts"
    body = request.payload
    assert len(body["message"]) == 130
    assert (body["alias"], body["priority"], body["source"], body["entity"]) == (DEDUP, "P2", "Alert Center",
                                                                                   "acme/checkout")
    assert body["tags"] == ["alertcenter", "severity:critical", "tenant:acme", "plugin:checkout", "category:errors",
                            "source:log_rule"]
    assert body["details"]["label.host"] == "web-1" and body["details"]["count"] == "42"
    assert all(isinstance(v, str) for v in body["details"].values())
    assert body["description"].startswith("42 errors in 5 minutes")


@pytest.mark.parametrize(("ours", "priority"), [("emergency", "P1"), ("critical", "P2"), ("warning", "P3"),
                                                ("info", "P5")])
def test_opsgenie_priority_mapping(ours, priority):
    assert triggered("opsgenie", severity=ours).payload["priority"] == priority


def test_opsgenie_acknowledge_and_close_address_the_alias():
    ack = updated("opsgenie", "ACKNOWLEDGED", acknowledged_by="alice")
    assert ack.path == f"/v2/alerts/{DEDUP}/acknowledge?identifierType=alias"
    assert ack.payload == {"source": "Alert Center", "user": "alice", "note": "Acknowledged in Alert Center by alice"}
    close = updated("opsgenie", "RESOLVED", resolved_by="bob")
    assert close.path == f"/v2/alerts/{DEDUP}/close?identifierType=alias"
    assert close.payload["source"] == "Alert Center" and close.payload["note"] == "Resolved in Alert Center by bob"


@pytest.mark.parametrize("kind", CHANNEL_KINDS)
def test_only_state_changes_of_alert_updated_are_sent(kind):
    alert = sample_alert()
    assert render(kind, "alert.updated", alert, changes={"delivery_state": "DELIVERED"}) is None
    assert render(kind, "alert.updated", alert, changes={"assignee": "alice"}) is None
    assert render(kind, "alert.updated", {**alert, "state": "SUPPRESSED"}, changes={"state": "SUPPRESSED"}) is None
    for state in ("ACKNOWLEDGED", "RESOLVED"):
        assert updated(kind, state) is not None
    assert render(kind, "alert.updated", alert, changes={"state": "OPEN", "reopened": True}) is not None
    assert render(kind, "alert.escalated", alert) is not None


def test_slack_resolved_message_says_so():
    request = updated("slack", "RESOLVED", resolved_by="bob")
    assert request.payload["text"] == "Resolved: [CRITICAL] Payment errors above 5% for 5 minutes"
    assert request.payload["blocks"][2]["text"]["text"].endswith("Resolved by bob.")


def test_email_and_sms_render_from_the_fallback_messages():
    email = triggered("email").payload
    assert email["subject"] == "[CRITICAL] Payment errors above 5% for 5 minutes"
    assert URL in email["text"] and f'href="{URL}"' in email["html"]
    assert updated("email", "RESOLVED").payload["subject"].startswith("[RESOLVED] [CRITICAL]")
    sms = triggered("sms").payload["text"]
    assert sms.startswith("[CRITICAL] checkout: Payment errors") and URL in sms


def test_email_body_override_is_html_escaped_in_the_html_part():
    alert = {**sample_alert(), "summary": "<script>x</script>"}
    email = render("email", "alert.triggered", alert, templates={"title": "{{ tenant }}: {{ title }}",
                                                                "body": "Hi\n{{ summary }}\n\nBye"}).payload
    assert email["subject"] == "acme: Payment errors above 5% for 5 minutes"
    assert email["text"] == "Hi\n<script>x</script>\n\nBye"
    assert email["html"] == "<p>Hi<br>&lt;script&gt;x&lt;/script&gt;</p><p>Bye</p>"


def test_unknown_and_webhook_kinds_are_refused():
    with pytest.raises(ValueError, match="signed webhook transport"):
        render("webhook", "alert.triggered", sample_alert())
    with pytest.raises(ValueError, match="unknown channel kind 'pigeon'"):
        render("pigeon", "alert.triggered", sample_alert())
    with pytest.raises(ValueError, match="unknown event type 'alert.exploded'"):
        render("slack", "alert.exploded", sample_alert())


def test_channel_request_round_trip_and_bad_body():
    request = triggered("opsgenie")
    assert ChannelRequest.decode(request.encode()) == request
    assert ChannelRequest.decode(memoryview(request.encode())) == request
    with pytest.raises(ValueError, match="not JSON"):
        ChannelRequest.decode(b"{nope")
    with pytest.raises(ValueError, match="needs"):
        ChannelRequest.decode(b'{"path": 1, "payload": {}}')


# --- sending: success, and every failure code ----------------------------------------------------


@pytest.mark.parametrize("kind", VENDOR_KINDS)
def test_success_and_the_server_got_the_rendered_payload(kind):
    request = triggered(kind)
    with server_for(kind) as server:
        result = send(kind, request, config_for(kind, server), timeout=5)
    assert result.status_code == {"slack": 200}.get(kind, 202)
    [got] = server.requests
    assert got.headers["content-type"] == "application/json"
    expected = request.payload if kind != "pagerduty" else {"routing_key": PD_ROUTING_KEY, **request.payload}
    assert got.json == expected
    if kind == "opsgenie":
        assert got.headers["authorization"] == f"GenieKey {OPSGENIE_KEY}"
        assert '"Request will be processed"' in result.response_excerpt


@pytest.mark.parametrize("kind", VENDOR_KINDS)
def test_secrets_never_appear_in_the_stored_request(kind):
    with server_for(kind) as server:
        config = config_for(kind, server)
        stored = [triggered(kind).encode(), updated(kind, "ACKNOWLEDGED").encode(), updated(kind, "RESOLVED").encode()]
        for body in stored:
            send(kind, ChannelRequest.decode(body), config, timeout=5)
    secrets = [v for k, v in config.items() if CONFIG_FIELDS[kind][k]["secret"]]
    assert secrets and len(server.requests) == 3
    for body in stored:
        for secret in secrets:
            assert secret.encode() not in body
    # ...while the vendor did receive them
    if kind == "pagerduty":
        assert {r.json["routing_key"] for r in server.requests} == {PD_ROUTING_KEY}
    if kind == "slack":
        assert {r.path for r in server.requests} == {SlackServer.TOKEN_PATH}


SLACK_FAILURES = [
    ("invalid_payload", 400, True, None), ("no_text", 400, True, None), ("action_prohibited", 403, True, None),
    ("invalid_token", 403, True, None), ("channel_not_found", 404, True, None), ("no_service", 404, True, None),
    ("channel_is_archived", 410, True, None), ("rate_limited", 429, False, 7.0), ("rollup_error", 500, False, None),
]
TEAMS_FAILURES = [
    ("upstream_429", 200, False, 30.0), ("bad_request", 400, True, None), ("unauthorized", 401, True, None),
    ("request_timeout", 408, False, None), ("too_many_requests", 429, False, 12.0), ("bad_gateway", 502, False, None),
]
PAGERDUTY_FAILURES = [
    ("invalid_event", 400, True, None), ("rate_limited", 429, False, 30.0),
    ("rate_limited_retry_after", 429, False, 4.0), ("server_error", 500, False, None), ("unavailable", 503, False, 9.0),
]
OPSGENIE_FAILURES = [
    ("bad_request", 400, True, None), ("unauthorized", 401, True, None), ("forbidden", 403, True, None),
    ("not_found", 404, True, None), ("unprocessable", 422, True, None), ("rate_limited", 429, False, 30.0),
    ("rate_limited_retry_after", 429, False, 5.0), ("server_error", 500, False, None),
]
FAILURES = ([("slack", *f) for f in SLACK_FAILURES] + [("teams", *f) for f in TEAMS_FAILURES]
            + [("pagerduty", *f) for f in PAGERDUTY_FAILURES] + [("opsgenie", *f) for f in OPSGENIE_FAILURES])


@pytest.mark.parametrize(("kind", "answer", "status", "permanent", "retry_after"), FAILURES,
                         ids=[f"{f[0]}-{f[1]}" for f in FAILURES])
def test_vendor_failure_is_mapped(kind, answer, status, permanent, retry_after):
    with server_for(kind, answer) as server:
        with pytest.raises(TransportError) as caught:
            send(kind, triggered(kind), config_for(kind, server), timeout=5)
    err = caught.value
    assert (err.status_code, err.permanent, err.retry_after) == (status, permanent, retry_after)
    assert err.latency_ms is not None and err.response_excerpt == server.ANSWERS[answer].encoded()[0].decode()
    assert str(server.port) not in err.message  # names the vendor and host only


@pytest.mark.parametrize("kind", VENDOR_KINDS)
def test_kept_connection_is_reused_only_when_asked(kind):
    with server_for(kind) as server:
        for keep_alive in (True, True, True, False, False):
            send(kind, triggered(kind), config_for(kind, server), timeout=5, keep_alive=keep_alive)
    ports = [r.client_port for r in server.requests]
    assert len(ports) == 5 and ports[0] == ports[1] == ports[2]  # the deliver threads: one connection
    assert len({ports[0], ports[3], ports[4]}) == 3  # one-off sends (the API's test action): their own


def test_slack_error_names_the_slack_code():
    with SlackServer("channel_is_archived") as slack:
        with pytest.raises(TransportError, match=r"HTTP 410 from Slack \(127.0.0.1\): channel_is_archived"):
            send("slack", triggered("slack"), {"webhook_url": slack.url}, timeout=5)


def test_slack_wrong_token_is_refused_by_the_server_rules():
    with SlackServer() as slack:
        with pytest.raises(TransportError, match="invalid_token") as caught:
            send("slack", triggered("slack"), {"webhook_url": slack.url[:-3] + "abc"}, timeout=5)
    assert caught.value.permanent


def test_pagerduty_error_names_the_event_errors():
    with PagerDutyServer(routing_key="f" * 32) as pd:
        with pytest.raises(TransportError, match="Event object is invalid; Invalid routing key") as caught:
            send("pagerduty", triggered("pagerduty"), config_for("pagerduty", pd), timeout=5)
    assert caught.value.permanent and caught.value.status_code == 400


def test_teams_any_2xx_is_success():
    with TeamsServer("ok_legacy") as teams:
        assert send("teams", triggered("teams"), {"webhook_url": teams.url}, timeout=5).status_code == 200
        assert send("teams", triggered("teams"), {"webhook_url": teams.url}, timeout=5).status_code == 202


def test_teams_server_refuses_a_bare_text_body():
    with TeamsServer() as teams:
        with pytest.raises(TransportError) as caught:
            send("teams", ChannelRequest(path="", payload={"text": "hi"}), {"webhook_url": teams.url}, timeout=5)
    assert caught.value.permanent and caught.value.status_code == 400


# --- lifecycles: one dedup key / alias ----------------------------------------------------------


def test_pagerduty_trigger_acknowledge_resolve_share_one_dedup_key():
    with PagerDutyServer() as pd:
        config = config_for("pagerduty", pd)
        send("pagerduty", triggered("pagerduty"), config, timeout=5)
        assert pd.incidents == {DEDUP: "triggered"}
        send("pagerduty", updated("pagerduty", "ACKNOWLEDGED"), config, timeout=5)
        assert pd.incidents == {DEDUP: "acknowledged"}
        send("pagerduty", updated("pagerduty", "RESOLVED"), config, timeout=5)
    assert pd.incidents == {DEDUP: "resolved"}
    assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [
        ("trigger", DEDUP), ("acknowledge", DEDUP), ("resolve", DEDUP)]


def test_opsgenie_create_acknowledge_close_by_alias():
    with OpsgenieServer() as og:
        config = config_for("opsgenie", og)
        send("opsgenie", triggered("opsgenie"), config, timeout=5)
        send("opsgenie", updated("opsgenie", "ACKNOWLEDGED", acknowledged_by="alice"), config, timeout=5)
        assert og.alerts[DEDUP]["acknowledged"] and og.alerts[DEDUP]["status"] == "open"
        send("opsgenie", updated("opsgenie", "RESOLVED", resolved_by="alice"), config, timeout=5)
    assert og.actions == [("create", DEDUP), ("acknowledge", DEDUP), ("close", DEDUP)]
    assert og.alerts[DEDUP]["status"] == "closed"
    assert [r.query for r in og.requests[1:]] == [{"identifierType": "alias"}] * 2


# --- SSRF guard and the total deadline -----------------------------------------------------------


@pytest.mark.parametrize("kind", VENDOR_KINDS)
def test_private_address_refused_when_not_allowed(kind, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    with server_for(kind) as server:
        config = config_for(kind, server)
        key = "webhook_url" if "webhook_url" in config else "base_url"
        config[key] = config[key].replace("http://", "https://")
        with pytest.raises(TransportError, match="URL refused: .*127.0.0.1") as caught:
            send(kind, triggered(kind), config, timeout=5)
        with pytest.raises(ValueError, match=f"config.{key}: .*127.0.0.1"):
            validate_config(kind, config)
    assert caught.value.permanent
    assert server.requests == []


@pytest.mark.parametrize("kind", VENDOR_KINDS)
def test_a_server_that_never_answers_costs_at_most_the_deadline(kind):
    with server_for(kind, "hang") as server:
        started = time.monotonic()
        with pytest.raises(TransportError, match="within 1 s") as caught:
            send(kind, triggered(kind), config_for(kind, server), timeout=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert not caught.value.permanent and len(server.requests) == 1


# --- templates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", VENDOR_KINDS)
def test_title_override_replaces_the_default(kind):
    default = triggered(kind)
    custom = render(kind, "alert.triggered", sample_alert(), templates={"title": "{{ tenant|upper }} on fire"})
    assert "ACME on fire" not in default.encode().decode()
    assert "ACME on fire" in custom.encode().decode()


@pytest.mark.parametrize(("text", "problem"), [
    ("{% if %}", "syntax error"),
    ("{{ title }", "unclosed {{ or {% on line 1"),
    ('{% include "base.html" %}', "tag {% include %} is not allowed"),
    ("{% load static %}", "tag {% load %} is not allowed"),
    ("{% debug %}", "tag {% debug %} is not allowed"),
    ("x" * 5000, "5000 bytes; at most 4096"),
    ("{{ count|divisibleby:0 }}", "fails on a sample alert: ZeroDivisionError"),
    ("{% if false %}x{% endif %}", "renders empty"),
])
def test_invalid_templates_are_refused(text, problem):
    with pytest.raises(ValueError, match="^title: .*" + problem.replace("{", r"\{").replace("(", r"\(")):
        validate_template("slack", "title", text)


def test_template_names_and_valid_templates():
    validate_template("pagerduty", "body", "{{ unknown_variable }}{% for k, v in labels.items %}{{ k }}={{ v }} {% endfor %}")
    validate_template("sms", "body", "{{ title }} {{ url }}")
    with pytest.raises(ValueError, match="unknown template 'title' for sms"):
        validate_template("sms", "title", "x")
    with pytest.raises(ValueError, match="unknown channel kind"):
        validate_template("fax", "title", "x")


def test_a_stored_override_that_fails_at_send_falls_back_to_the_default():
    request = render("slack", "alert.triggered", sample_alert(), templates={"title": "{{ count|divisibleby:0 }}"})
    assert request.payload["text"] == triggered("slack").payload["text"]


# --- config --------------------------------------------------------------------------------------


def test_validate_config_fills_defaults_and_names_bad_fields():
    assert validate_config("pagerduty", {"routing_key": f" {PD_ROUTING_KEY} "}) == {
        "routing_key": PD_ROUTING_KEY, "base_url": "https://events.pagerduty.com"}
    assert validate_config("opsgenie", {"api_key": OPSGENIE_KEY, "base_url": "http://127.0.0.1:9/"}) == {
        "api_key": OPSGENIE_KEY, "base_url": "http://127.0.0.1:9"}
    assert validate_config("email", {"recipients": "a@example.com; b@example.com"}) == {
        "recipients": "a@example.com, b@example.com"}
    cases = [
        ("slack", {}, "config.webhook_url: required"),
        ("slack", {"webhook_url": "ftp://x"}, "config.webhook_url: URL scheme 'ftp'"),
        ("pagerduty", {"routing_key": "short"}, "config.routing_key: a PagerDuty integration key is 32"),
        ("opsgenie", {"api_key": OPSGENIE_KEY, "region": "eu"}, "config.region: unknown field for opsgenie"),
        ("opsgenie", {"api_key": 5}, "config.api_key: give a string"),
        ("email", {"recipients": "ops@example.com, nope"}, "config.recipients: 'nope' is not an email"),
        ("sms", {"numbers": "5551234"}, "config.numbers: '5551234' is not an E.164"),
        ("opsgenie", {"api_key": OPSGENIE_KEY, "base_url": "http://127.0.0.1:9/x?y=1"}, "config.base_url: a base URL has no query"),
    ]
    for kind, config, message in cases:
        with pytest.raises(ValueError, match="^" + message.replace("?", r"\?")):
            validate_config(kind, config)


def test_config_fields_mark_the_secrets():
    secret = {kind: sorted(k for k, spec in fields.items() if spec["secret"]) for kind, fields in CONFIG_FIELDS.items()}
    assert secret == {"email": [], "sms": [], "slack": ["webhook_url"], "teams": ["webhook_url"],
                      "pagerduty": ["routing_key"], "opsgenie": ["api_key"]}


# --- email and SMS through the existing transports ----------------------------------------------


def test_email_channel_sends_html_and_text_to_every_recipient(settings):
    with SmtpServer() as smtp:
        for key, value in peer_settings(smtp=smtp).items():
            setattr(settings, key, value)
        request = ChannelRequest.decode(triggered("email").encode())
        result = send("email", request, {"recipients": "ops@example.com, oncall@example.com"}, timeout=5)
    assert result.response_excerpt == "sent to 2 recipient(s)"
    [envelope] = smtp.envelopes
    assert envelope.rcpt_tos == ["ops@example.com", "oncall@example.com"]
    parsed = message_from_bytes(envelope.content)
    assert parsed["Subject"] == "[CRITICAL] Payment errors above 5% for 5 minutes"
    assert sorted(p.get_content_type() for p in parsed.walk() if not p.is_multipart()) == ["text/html", "text/plain"]


def test_sms_channel_sends_to_every_number(settings):
    with SmsServer() as sms:
        for key, value in peer_settings(sms=sms).items():
            setattr(settings, key, value)
        send("sms", triggered("sms"), {"numbers": "+15551230001,+15551230002"}, timeout=5)
    assert [m["To"] for m in sms.messages] == ["+15551230001", "+15551230002"]
    assert sms.messages[0]["Body"].startswith("[CRITICAL] checkout: Payment errors")
