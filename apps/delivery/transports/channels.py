"""One entry point for every channel kind but the signed webhook: ``render`` what to send for a
notification (pure, no secrets), ``send`` it once with the channel's decrypted config.

Kinds: ``slack``, ``teams``, ``pagerduty``, ``opsgenie`` (one module each, vendor contracts and
failure policies in their docstrings) and ``email``/``sms`` (rendered from
``apps.delivery.messages`` and sent by the existing ``EmailTransport``/``SmsTransport``). ``webhook``
stays on its own signed path and is refused here.

Contract for the caller (the delivery worker): store ``render(...).encode()`` as the delivery body
(it holds no secret: the webhook URL, routing key and API key come from ``config`` at send time);
at each attempt call ``send(kind, ChannelRequest.decode(body), config, timeout=...)``; it returns an
``AttemptResult`` or raises ``TransportError`` (``permanent``, ``status_code``, ``retry_after``,
``response_excerpt``) and never retries by itself. ``render`` returns None when the event is not
sent on this kind (e.g. an alert.updated that only changed the delivery state); pass the
notification's ``changes`` so alert.updated events are told apart. Templates are documented in
``channel_templates``; ``validate_config``/``validate_template`` raise ``ValueError`` naming the
field, for 422 answers.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

from apps.delivery.messages import alert_email, alert_sms
from apps.delivery.transports import opsgenie, pagerduty, slack, teams
from apps.delivery.transports.base import AttemptResult, OutboundMessage
from apps.delivery.transports.channel_kit import ChannelRequest, check_base_url
from apps.delivery.transports.channel_templates import (
    TEMPLATE_FILES,
    change_of,
    compile_template,
    context,
    render_texts,
    render_with,
    sample_alert,
)
from apps.delivery.transports.email import EmailTransport
from apps.delivery.transports.sms import SmsConfig, SmsTransport

__all__ = ["CHANNEL_KINDS", "CONFIG_FIELDS", "ChannelRequest", "render", "sample_alert", "send",
           "validate_config", "validate_template"]

_VENDORS: dict[str, ModuleType] = {m.KIND: m for m in (slack, teams, pagerduty, opsgenie)}
CHANNEL_KINDS: tuple[str, ...] = ("email", "sms", *_VENDORS)
MAX_RECIPIENTS = 50
# Per kind: config key -> {secret, required, default?, url?, help}. Secrets are encrypted at rest and
# never shown after creation; ``url`` values pass the SSRF guard on save and at every send.
CONFIG_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "email": {"recipients": {"secret": False, "required": True, "help": "Addresses, comma-separated"}},
    "sms": {"numbers": {"secret": False, "required": True, "help": "E.164 numbers (+15551234567), comma-separated"}},
    **{kind: module.CONFIG for kind, module in _VENDORS.items()},
}
_STATUS_PREFIX = {"acknowledged": "ACKNOWLEDGED", "resolved": "RESOLVED", "reopened": "REOPENED", "test": "TEST"}
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def _kind(kind: str) -> str:
    if kind == "webhook":
        raise ValueError("webhook channels are sent by the signed webhook transport, not apps.delivery.transports.channels")
    if kind not in CONFIG_FIELDS:
        raise ValueError(f"unknown channel kind {kind!r} (known: {', '.join(CHANNEL_KINDS)})")
    return kind


def render(kind: str, event_type: str, alert: dict, *, templates: dict[str, str] | None = None,
           changes: dict | None = None) -> ChannelRequest | None:
    """What to send on a ``kind`` channel for ``event_type`` about ``alert`` (a notification payload),
    or None when this event is not sent there. Pure: no database, no network, no secrets."""
    change = change_of(event_type, alert, changes)
    if change is None:
        return None
    if _kind(kind) == "email":
        return _render_email(change, event_type, alert, templates)
    if kind == "sms":
        return _render_sms(change, event_type, alert, templates)
    module = _VENDORS[kind]
    texts = render_texts(kind, context(alert, event_type, change, module.ESCAPE), templates)
    return module.render(change, alert, texts)


def send(kind: str, request: ChannelRequest, config: Mapping[str, str], *, timeout: float,
         keep_alive: bool = False) -> AttemptResult:
    """One attempt; see the module docstring. ``timeout`` is the total budget of the attempt;
    ``keep_alive`` reuses this thread's connection to the vendor (the deliver workers' send threads)."""
    if _kind(kind) == "email":
        recipients = _split(config.get("recipients", ""))
        message = OutboundMessage(msg_id="channel", recipients=tuple(recipients), subject=request.payload["subject"],
                                  text=request.payload["text"], html=request.payload.get("html", ""))
        return EmailTransport(timeout=timeout).send(message)
    if kind == "sms":
        sms = SmsTransport(config=replace(SmsConfig.from_settings(), timeout=timeout))
        return sms.send(OutboundMessage(msg_id="channel", recipients=tuple(_split(config.get("numbers", ""))),
                                        text=request.payload["text"]))
    return _VENDORS[kind].send(request, config, timeout=timeout, keep_alive=keep_alive)


def _render_email(change: str, event_type: str, alert: dict, templates: Mapping[str, str] | None) -> ChannelRequest:
    fields = alert_email(alert, reason=f"this address is a notification channel of tenant {alert.get('tenant')}")
    prefix = _STATUS_PREFIX.get(change)
    if prefix:
        fields["subject"] = f"[{prefix}] {fields['subject']}"
    texts = render_texts("email", context(alert, event_type, change, None), templates) if templates else {}
    if texts.get("title"):
        fields["subject"] = " ".join(texts["title"].split())
    if texts.get("body"):
        fields["text"] = texts["body"]
        paragraphs = texts["body"].split("\n\n")
        fields["html"] = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return ChannelRequest(path="", payload=fields)


def _render_sms(change: str, event_type: str, alert: dict, templates: Mapping[str, str] | None) -> ChannelRequest:
    text = alert_sms(alert)["text"]
    prefix = _STATUS_PREFIX.get(change)
    if prefix:
        text = f"{prefix}: {text}"
    texts = render_texts("sms", context(alert, event_type, change, None), templates) if templates else {}
    return ChannelRequest(path="", payload={"text": texts.get("body") or text})


def _split(value: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,;\s]+", value or "") if item.strip()]


def _check_recipients(value: str) -> str:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    items = _split(value)
    if not items or len(items) > MAX_RECIPIENTS:
        raise ValueError(f"give 1 to {MAX_RECIPIENTS} addresses")
    for item in items:
        try:
            validate_email(item)
        except ValidationError:
            raise ValueError(f"{item!r} is not an email address") from None
    return ", ".join(items)


def _check_numbers(value: str) -> str:
    items = _split(value)
    if not items or len(items) > MAX_RECIPIENTS:
        raise ValueError(f"give 1 to {MAX_RECIPIENTS} numbers")
    for item in items:
        if not _E164.fullmatch(item):
            raise ValueError(f"{item!r} is not an E.164 number (like +15551234567)")
    return ",".join(items)


def _check_routing_key(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]{32}", value):
        raise ValueError("a PagerDuty integration key is 32 letters and digits")
    return value


def _check_api_key(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9-]{8,128}", value):
        raise ValueError("an Opsgenie API key is letters, digits and dashes (a UUID)")
    return value


def _check_base_url(value: str) -> str:
    url = check_base_url(value).rstrip("/")
    if "?" in url or "#" in url:
        raise ValueError("a base URL has no query or fragment")
    return url


_CHECKS: dict[str, Callable[[str], str]] = {
    "recipients": _check_recipients, "numbers": _check_numbers, "routing_key": _check_routing_key,
    "api_key": _check_api_key, "base_url": _check_base_url, "webhook_url": check_base_url,
}


def validate_config(kind: str, config: dict) -> dict:
    """The clean config of a ``kind`` channel (stripped, defaults filled in), or ``ValueError`` whose
    message starts with ``config.<field>:``. URLs pass the SSRF guard (their host is resolved)."""
    fields = CONFIG_FIELDS[_kind(kind)]
    if not isinstance(config, dict):
        raise ValueError("config: give an object")
    for key in config:
        if key not in fields:
            raise ValueError(f"config.{key}: unknown field for {kind} (known: {', '.join(fields)})")
    clean: dict[str, str] = {}
    for name, spec in fields.items():
        value = config.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"config.{name}: give a string")
        value = (value or "").strip()
        if not value:
            if spec["required"]:
                raise ValueError(f"config.{name}: required")
            if "default" in spec:
                clean[name] = spec["default"]
            continue
        if len(value) > 2048:
            raise ValueError(f"config.{name}: longer than 2048 characters")
        try:
            clean[name] = _CHECKS[name](value)
        except ValueError as exc:
            raise ValueError(f"config.{name}: {exc}") from None
    return clean


def validate_template(kind: str, name: str, text: str) -> None:
    """Refuse a ``name`` template override for ``kind`` that is too big, uses a forbidden tag, does
    not compile, fails on a sample alert or (a title) renders empty; ``ValueError`` names the problem.
    Unknown variables are fine (they render empty, as in any Django template)."""
    names = TEMPLATE_FILES[_kind(kind)]
    if name not in names:
        raise ValueError(f"unknown template {name!r} for {kind} (known: {', '.join(names)})")
    try:
        template = compile_template(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    escape = getattr(_VENDORS.get(kind), "ESCAPE", None)
    try:
        out = render_with(template, context(sample_alert(), "alert.triggered", "triggered", escape))
    except Exception as exc:  # noqa: BLE001 - any rendering failure is the template's fault
        raise ValueError(f"{name}: fails on a sample alert: {type(exc).__name__}: {exc}") from None
    if name == "title" and not out:
        raise ValueError(f"{name}: renders empty on a sample alert")
