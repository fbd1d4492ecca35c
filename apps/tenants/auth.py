"""Bearer-token authentication for the API.

Tokens look like ``ac_<prefix>_<secret>``. Only the prefix (for lookup) and a SHA-256 of the
whole token are stored, so a database leak yields no usable token.
"""
from __future__ import annotations

from rest_framework import authentication, exceptions

from apps.core import bruteforce
from apps.core.auth import TokenPrincipal
from apps.core.client_ip import client_ip

from . import tokens


def _too_many_failures(wait: int) -> exceptions.Throttled:
    """429 with Retry-After. The message is set after construction: DRF appends "Expected available
    in N seconds." to any detail it is given, which read "...retry after Retry-After Expected ..."."""
    exc = exceptions.Throttled(wait=wait)
    exc.detail = exceptions.ErrorDetail(bruteforce.refusal_message(exc.wait), code=exc.default_code)
    return exc


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        # The token is checked first: a valid one is never refused for other clients' failures.
        token = tokens.authenticate_token(parts[1])
        if token is None:
            wait = bruteforce.record_failure(plain=parts[1], address=client_ip(request))
            if wait:
                raise _too_many_failures(wait)
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        principal = TokenPrincipal(
            token_id=token.id,
            name=token.name,
            tenant_id=token.tenant_id,
            tenant_slug=token.tenant.slug if token.tenant_id else None,
            scopes=frozenset(token.scopes),
        )
        return principal, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a missing or bad token.
        return 'Bearer realm="api"'


try:  # Describe the bearer scheme in the OpenAPI schema (drf-spectacular's documented hook).
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
        target_class = "apps.tenants.auth.TokenAuthentication"
        name = "bearerAuth"

        def get_security_definition(self, auto_schema):
            return {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token from `manage.py issue_token` (ac_<prefix>_<secret>), with the scopes "
                               "the endpoint names: logs:write, alerts:read, alerts:write, webhooks:write, "
                               "rules:read, rules:write.",
            }
except ImportError:  # pragma: no cover - drf-spectacular is a runtime dependency
    pass
