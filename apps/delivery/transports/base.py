"""Transport contract shared by webhook, email and SMS delivery.

A transport sends one ``OutboundMessage`` once: no retries, no database. It returns an
``AttemptResult`` on success and raises ``TransportError`` on any failure; ``permanent`` says that
sending the same message again cannot succeed (the caller stops retrying this delivery), and
``retry_after`` carries a receiver's requested wait in seconds. Retry timing, attempt rows and
endpoint state belong to the caller (``apps.delivery`` services).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

EXCERPT_LIMIT = 1024  # bytes of a response body kept for the attempt log


@dataclass(frozen=True)
class OutboundMessage:
    """What to send, independent of Django models. Each transport reads the fields it needs:
    webhook: ``url``, ``body``, ``headers``; email: ``recipients``, ``subject``, ``text``, ``html``,
    ``headers``; SMS: ``recipients``, ``text``. ``msg_id`` identifies the message in logs."""

    msg_id: str
    url: str = ""
    recipients: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str = ""
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttemptResult:
    """A successful send. ``status_code`` is the HTTP status (None for email)."""

    status_code: int | None
    latency_ms: int
    response_excerpt: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "response_excerpt", no_nul(self.response_excerpt))


class TransportError(Exception):
    """A failed send; see the module docstring for ``permanent`` and ``retry_after``."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
        response_excerpt: str = "",
        latency_ms: int | None = None,
    ) -> None:
        message = no_nul(message)
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.response_excerpt = no_nul(response_excerpt)
        self.latency_ms = latency_ms

    def __repr__(self) -> str:
        return f"TransportError({self.message!r}, permanent={self.permanent}, status_code={self.status_code})"


class Transport:
    """Base class: subclasses set ``kind`` and implement ``send``."""

    kind: ClassVar[str] = ""

    def send(self, message: OutboundMessage) -> AttemptResult:
        """Send once; return ``AttemptResult`` or raise ``TransportError``."""
        raise NotImplementedError


def no_nul(text: str) -> str:
    """``text`` with NUL replaced: PostgreSQL's text refuses it, and one NUL in an attempt's error or
    answer would fail the recording of its whole batch (every row of it sent again after the lease)."""
    return text.replace("\x00", "\ufffd") if isinstance(text, str) and "\x00" in text else text


def excerpt(data: bytes | None, limit: int = EXCERPT_LIMIT) -> str:
    """First ``limit`` bytes of a body as text (undecodable bytes and NUL replaced)."""
    return no_nul((data or b"")[:limit].decode("utf-8", "replace"))


class Stopwatch:
    """Milliseconds since creation, for ``latency_ms``."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def ms(self) -> int:
        return int((time.monotonic() - self._start) * 1000)


_REGISTRY: dict[str, type[Transport]] = {}


def register(cls: type[Transport]) -> type[Transport]:
    """Class decorator adding a transport to the registry under ``cls.kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    _REGISTRY[cls.kind] = cls
    return cls


def get_transport(kind: str, **kwargs: object) -> Transport:
    """Instantiate the transport for ``kind`` (``webhook``, ``email``, ``sms``); kwargs go to its
    constructor (e.g. ``config=``). Raises ``KeyError`` naming the known kinds."""
    try:
        cls = _REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown transport {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    return cls(**kwargs)


def setting(name: str, default: object) -> object:
    """Read a Django setting lazily, falling back to ``default`` when it (or Django settings) is
    missing, so transports stay importable and testable without a configured project."""
    try:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured
    except ImportError:  # pragma: no cover - Django is a hard dependency of the project
        return default
    try:
        return getattr(settings, name, default)
    except ImproperlyConfigured:
        return default
