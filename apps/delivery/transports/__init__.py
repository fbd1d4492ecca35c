"""Delivery transports: ``get_transport(kind)`` returns a webhook, email or SMS sender."""

from __future__ import annotations

from apps.delivery.transports.base import (
    AttemptResult,
    OutboundMessage,
    Transport,
    TransportError,
    get_transport,
    register,
)
from apps.delivery.transports.email import EmailTransport
from apps.delivery.transports.sms import SmsConfig, SmsTransport
from apps.delivery.transports.webhook import WebhookConfig, WebhookTransport

__all__ = [
    "AttemptResult",
    "EmailTransport",
    "OutboundMessage",
    "SmsConfig",
    "SmsTransport",
    "Transport",
    "TransportError",
    "WebhookConfig",
    "WebhookTransport",
    "get_transport",
    "register",
]
