"""Issue, authenticate and revoke API tokens.

A token is ``ac_<prefix>_<secret>``: the prefix finds the row, the SHA-256 digest of the whole
token is compared in constant time. The plain token is returned once, at issue, and never stored.

A process keeps the tokens it authenticated for ``API_TOKEN_CACHE_SECONDS``, keyed by digest
(never by the plain token), so a log shipper's requests cost no token query. Revocation, expiry
and the tenant's switch are still judged at every request, on the kept row; a change made by
another process reaches the kept row within those seconds, one made by this process at once
(``forget_tokens`` on revocation and on every token or tenant save or delete).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from apps.audit.services import record
from apps.core import clock
from apps.core.scopes import parse_scopes

from .models import ApiToken, Tenant

# last_used_at is a convenience, not an audit trail: write it at most once a minute per token
# so the ingest hot path does not turn every request into a row update.
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Past this many kept tokens the cache starts afresh (bounds memory against many distinct tokens).
_CACHE_MAX = 10_000
_cache: dict[str, tuple[float, ApiToken]] = {}  # digest -> (monotonic time read, row)
_monotonic = time.monotonic  # tests move this one, not the process's clock
# Bumped by every forget: a row read before a forget (by another thread) is not kept after it.
_generation = [0]


def forget_tokens(*args, **kwargs) -> None:
    """Drop every kept token."""
    _generation[0] += 1
    _cache.clear()


def on_token_or_tenant_changed(sender, **kwargs) -> None:
    """post_save / post_delete of an ApiToken or a Tenant (connected in ``TenantsConfig.ready``):
    forget now, for this transaction's own requests, and again once it commits, in case another
    thread of this process read the old row meanwhile."""
    forget_tokens()
    transaction.on_commit(forget_tokens)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(*, name: str, scopes: list[str] | str, tenant: Tenant | None, actor=None) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the plain token (shown once)."""
    scope_list = parse_scopes(scopes)
    prefix = secrets.token_hex(6)
    plain = f"ac_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        name=name, tenant=tenant, prefix=prefix, digest=_digest(plain), scopes=scope_list,
        created_by=actor if getattr(actor, "pk", None) and not isinstance(actor, ApiToken) else None,
    )
    record("token.issued", actor=actor, target=token, tenant=tenant,
           data={"name": name, "scopes": scope_list, "platform": tenant is None})
    return token, plain


def authenticate_token(plain: str) -> ApiToken | None:
    """The live token for ``plain``, or None (unknown, wrong secret, revoked, expired, tenant off)."""
    parts = plain.split("_")
    if len(parts) < 3 or parts[0] != "ac":
        return None
    digest = _digest(plain)
    token = _kept(digest)
    if token is None:
        generation = _generation[0]
        token = ApiToken.objects.select_related("tenant").filter(prefix=parts[1]).first()
        if token is None or not hmac.compare_digest(token.digest, digest):
            return None
        _keep(digest, token, generation)
    now = clock.now()
    if token.revoked_at or (token.expires_at and token.expires_at <= now):
        return None
    if token.tenant_id and not token.tenant.active:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def _kept(digest: str) -> ApiToken | None:
    hit = _cache.get(digest)
    if hit is None or _monotonic() - hit[0] > settings.API_TOKEN_CACHE_SECONDS:
        return None
    return hit[1]


def _keep(digest: str, token: ApiToken, generation: int) -> None:
    if settings.API_TOKEN_CACHE_SECONDS <= 0:
        return
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    if generation == _generation[0]:  # else forgotten while it was read: it may be the old row
        _cache[digest] = (_monotonic(), token)


def revoke_token(*, token: ApiToken, actor=None) -> None:
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=clock.now())
    on_token_or_tenant_changed(ApiToken)  # .update() sends no signal
    if updated:
        record("token.revoked", actor=actor, target=token, tenant=token.tenant, data={"name": token.name})
