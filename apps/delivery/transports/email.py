"""Email transport (fallback channel): text + HTML through Django's configured mail backend.

Failure policy: SMTP 5xx replies for the message or its recipients are permanent (resending the same
message gets the same answer); 4xx replies, connection errors and timeouts are transient; an SMTP
authentication failure is transient too, since it is our configuration (EMAIL_URL), not the message,
that is wrong and fixing it should let pending alerts go out.
"""

from __future__ import annotations

import smtplib
from typing import Any

from apps.delivery.transports.base import (
    AttemptResult,
    OutboundMessage,
    Stopwatch,
    Transport,
    TransportError,
    register,
    setting,
)


def _smtp_error(exc: smtplib.SMTPException, ms: int) -> TransportError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # Raised only when every recipient was refused; report the first reply.
        addr, (code, reply) = next(iter(exc.recipients.items()), ("?", (None, b"")))
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        permanent = code is None or code >= 500
        return TransportError(
            f"SMTP server refused recipient {addr}: {code} {text}", permanent=permanent, status_code=code, latency_ms=ms
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return TransportError(
            f"SMTP authentication failed ({exc.smtp_code}); check EMAIL_URL credentials",
            status_code=exc.smtp_code,
            latency_ms=ms,
        )
    if isinstance(exc, smtplib.SMTPConnectError):
        # The greeting was a refusal: a server-side condition, not something wrong with this message.
        return TransportError(
            f"SMTP server refused the connection: {exc.smtp_code}", status_code=exc.smtp_code, latency_ms=ms
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return TransportError(
            f"SMTP error {exc.smtp_code}: {text}",
            permanent=exc.smtp_code >= 500,
            status_code=exc.smtp_code,
            latency_ms=ms,
        )
    # SMTPServerDisconnected, SMTPNotSupportedError, ...: the conversation broke, try again later.
    return TransportError(f"SMTP failure: {exc}", latency_ms=ms)


@register
class EmailTransport(Transport):
    kind = "email"

    def __init__(self, connection: Any = None, from_email: str | None = None) -> None:
        # connection=None uses django.core.mail.get_connection() (EMAIL_* settings) at send time.
        self.connection = connection
        self.from_email = from_email

    def send(self, message: OutboundMessage) -> AttemptResult:
        from django.core.mail import EmailMultiAlternatives, get_connection

        if not setting("EMAIL_ENABLED", True):
            raise TransportError("email delivery is disabled (EMAIL_ENABLED=0)", permanent=True, latency_ms=0)
        if not message.recipients:
            raise TransportError("no email recipients", permanent=True, latency_ms=0)
        watch = Stopwatch()
        email = EmailMultiAlternatives(
            subject=message.subject.replace("\n", " ").replace("\r", " "),  # header injection guard
            body=message.text,
            from_email=self.from_email or setting("DEFAULT_FROM_EMAIL", None),
            to=list(message.recipients),
            headers=dict(message.headers),
            connection=self.connection or get_connection(fail_silently=False),
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        try:
            sent = email.send(fail_silently=False)
        except smtplib.SMTPException as exc:
            raise _smtp_error(exc, watch.ms()) from exc
        except (OSError, TimeoutError) as exc:  # refused, unreachable, DNS, timeout
            raise TransportError(f"cannot reach the SMTP server: {exc}", latency_ms=watch.ms()) from exc
        if not sent:
            raise TransportError("mail backend accepted no message", latency_ms=watch.ms())
        note = f"sent to {len(message.recipients)} recipient(s)"
        return AttemptResult(status_code=None, latency_ms=watch.ms(), response_excerpt=note)
