"""Signed, expiring download links for diagnostic reports.

The link is the credential (no token, no session): its signed value names the tenant, the alert
and the expiry, so it opens exactly one alert's report of exactly one tenant until then. Signed
with ``TimestampSigner`` (the issue time rides along for the audit) under its own salt, so no
other signed value of the project (sessions, cookies) can pass for a link. Expiry is checked
against ``apps.core.clock`` so tests and the chaos bench can move it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing

from apps.core import clock

SALT = "apps.reports.diagnostic-link"


class BadLink(Exception):
    """The link's signature does not verify (altered, truncated, or not ours): answer 404."""


class ExpiredLink(Exception):
    """A genuine link past its expiry: answer 410 Gone."""

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"this diagnostic report link expired at {expires_at.isoformat()}; "
                         "ask for a new one (console: alert -> Diagnostic report, or POST /api/v1/alerts/<id>/report)")
        self.expires_at = expires_at


@dataclass(frozen=True)
class LinkClaim:
    tenant_id: int
    alert_id: int
    expires_at: datetime
    issued_at: datetime | None = None


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=SALT)


def issue(*, tenant_id: int, alert_id: int, now: datetime | None = None) -> tuple[str, datetime]:
    """(token, expires_at): a link token for one alert, valid ``DIAGNOSTIC_LINK_MAX_AGE_SECONDS``."""
    now = now or clock.now()
    expires_at = (now + timedelta(seconds=settings.DIAGNOSTIC_LINK_MAX_AGE_SECONDS)).replace(microsecond=0)
    token = _signer().sign_object({"t": tenant_id, "a": alert_id, "e": int(expires_at.timestamp())})
    return token, expires_at


def verify(token: str, *, now: datetime | None = None) -> LinkClaim:
    """The claim of a genuine, unexpired link; ``BadLink`` or ``ExpiredLink`` otherwise."""
    signer = _signer()
    try:
        payload = signer.unsign_object(token)
        stamp = token.rsplit(signer.sep, 2)[-2]  # "<payload>:<timestamp>:<signature>", verified above
    except (signing.BadSignature, ValueError):
        raise BadLink("diagnostic report link not valid") from None
    try:
        claim = LinkClaim(tenant_id=int(payload["t"]), alert_id=int(payload["a"]),
                          expires_at=datetime.fromtimestamp(int(payload["e"]), tz=UTC),
                          issued_at=datetime.fromtimestamp(signing.b62_decode(stamp), tz=UTC))
    except (KeyError, TypeError, ValueError):
        raise BadLink("diagnostic report link not valid") from None
    if (now or clock.now()) >= claim.expires_at:
        raise ExpiredLink(claim.expires_at)
    return claim
