"""``TokenPrincipal``: who a token request is, as every app sees it (``request.user``).

The DRF authentication class that makes it lives with the tokens, in ``apps.tenants.auth``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenPrincipal:
    """What ``request.user`` is for a token request: the token, its tenant and scopes."""

    token_id: int
    name: str
    tenant_id: int | None
    tenant_slug: str | None
    scopes: frozenset[str]

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None

    def __str__(self) -> str:
        return f"token:{self.name}"
