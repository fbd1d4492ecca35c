"""Email transport (fallback channel): text + HTML through Django's configured mail backend.

Failure policy: SMTP 5xx replies for the message or its recipients are permanent (resending the same
message gets the same answer); 4xx replies, connection errors and timeouts are transient; an SMTP
authentication failure is transient too, since it is our configuration (EMAIL_URL), not the message,
that is wrong and fixing it should let pending alerts go out.

Deadline: the whole SMTP session (connect, greeting, STARTTLS, login, DATA, QUIT) must finish within
``EMAIL_TIMEOUT`` seconds, not just each read: with Django's SMTP backend configured, the transport
uses ``DeadlineEmailBackend``, whose sockets ``apps.delivery.deadline.watchdog`` shuts down when the
time is up (a server dripping its greeting one byte at a time cannot hold a worker).
"""

from __future__ import annotations

import smtplib
import socket
from typing import Any

from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend

from apps.delivery.deadline import Deadline, watch_socket, watchdog
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


class _WatchedSMTP(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)
        watch_socket(sock)
        return sock


class _WatchedSMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)
        watch_socket(sock)
        return sock


class DeadlineEmailBackend(SmtpEmailBackend):
    """Django's SMTP backend with its sockets registered with the enclosing ``watchdog`` block."""

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return _WatchedSMTPSSL if self.use_ssl else _WatchedSMTP


_DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"
_DEADLINE_SMTP = f"{__name__}.DeadlineEmailBackend"


@register
class EmailTransport(Transport):
    kind = "email"

    def __init__(self, connection: Any = None, from_email: str | None = None, timeout: float | None = None) -> None:
        # connection=None uses the configured backend (EMAIL_* settings) at send time; the session
        # deadline is ``timeout`` or EMAIL_TIMEOUT.
        self.connection = connection
        self.from_email = from_email
        self.timeout = timeout

    def send(self, message: OutboundMessage) -> AttemptResult:
        from django.core.mail import EmailMultiAlternatives

        if not setting("EMAIL_ENABLED", True):
            raise TransportError("email delivery is disabled (EMAIL_ENABLED=0)", permanent=True, latency_ms=0)
        if not message.recipients:
            raise TransportError("no email recipients", permanent=True, latency_ms=0)
        watch = Stopwatch()
        timeout = float(self.timeout or setting("EMAIL_TIMEOUT", None) or 10.0)
        email = EmailMultiAlternatives(
            subject=message.subject.replace("\n", " ").replace("\r", " "),  # header injection guard
            body=message.text,
            from_email=self.from_email or setting("DEFAULT_FROM_EMAIL", None),
            to=list(message.recipients),
            headers=dict(message.headers),
            connection=self.connection or _default_connection(timeout),
        )
        if message.html:
            email.attach_alternative(message.html, "text/html")
        with watchdog(Deadline(timeout)) as dog:
            try:
                sent = email.send(fail_silently=False)
            except (smtplib.SMTPException, OSError) as exc:
                if dog.fired:
                    msg = f"SMTP session did not finish within {timeout:g} s"
                    raise TransportError(msg, latency_ms=watch.ms()) from exc
                if isinstance(exc, smtplib.SMTPException):
                    raise _smtp_error(exc, watch.ms()) from exc
                # refused, unreachable, DNS, timeout
                raise TransportError(f"cannot reach the SMTP server: {exc}", latency_ms=watch.ms()) from exc
        if not sent:
            raise TransportError("mail backend accepted no message", latency_ms=watch.ms())
        note = f"sent to {len(message.recipients)} recipient(s)"
        return AttemptResult(status_code=None, latency_ms=watch.ms(), response_excerpt=note)


def _default_connection(timeout: float) -> Any:
    """The configured mail backend; Django's SMTP backend is swapped for its deadline-aware twin."""
    from django.core.mail import get_connection

    backend = setting("EMAIL_BACKEND", _DJANGO_SMTP)
    if backend == _DJANGO_SMTP:
        return get_connection(_DEADLINE_SMTP, fail_silently=False, timeout=timeout)
    return get_connection(fail_silently=False)
