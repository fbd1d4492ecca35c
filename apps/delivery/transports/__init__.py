"""Delivery transports: ``get_transport(kind)`` returns a webhook, email or SMS sender; ``channels``
renders and sends every channel kind but the webhook (slack, teams, pagerduty, opsgenie, email, sms)."""

from __future__ import annotations

from apps.delivery.transports import channels
from apps.delivery.transports.base import (
    AttemptResult,
    OutboundMessage,
    Transport,
    TransportError,
    get_transport,
    register,
)
from apps.delivery.transports.channel_kit import ChannelRequest
from apps.delivery.transports.email import EmailTransport
from apps.delivery.transports.sms import SmsConfig, SmsTransport
from apps.delivery.transports.webhook import WebhookConfig, WebhookTransport

__all__ = [
    "AttemptResult",
    "ChannelRequest",
    "EmailTransport",
    "OutboundMessage",
    "SmsConfig",
    "SmsTransport",
    "Transport",
    "TransportError",
    "WebhookConfig",
    "WebhookTransport",
    "channels",
    "get_transport",
    "register",
]
