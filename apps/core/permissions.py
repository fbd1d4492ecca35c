"""Scope checks. Views declare ``required_scopes = {"GET": "alerts:read", "POST": "alerts:write"}``
(or ``required_scope = "logs:write"`` for every method). A view that declares nothing is closed:
forgetting to declare a scope must never open an endpoint."""
from __future__ import annotations

from rest_framework.permissions import BasePermission

from .auth import TokenPrincipal


# Declared by views any valid token may call (e.g. /api/v1/whoami).
ANY_SCOPE = "*"


def required_scope_for(view, method: str) -> str | None:
    scopes = getattr(view, "required_scopes", None)
    if scopes:
        return scopes.get(method) or scopes.get("*")
    return getattr(view, "required_scope", None)


def _handles(view, method: str) -> bool:
    """Whether the view has a handler for ``method`` (as Django's View.dispatch decides)."""
    name = method.lower()
    return name in view.http_method_names and hasattr(view, name)


class HasScope(BasePermission):
    message = "token lacks the required scope"

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, TokenPrincipal):
            return False
        if not _handles(view, request.method):
            # Opens nothing: the dispatch answers 405 for a method the view lacks (a 403 would send
            # the client hunting for a scope no token can have).
            return True
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        needed = required_scope_for(view, method)
        if needed is None:
            return False
        if needed == ANY_SCOPE:
            return True
        if needed not in principal.scopes:
            self.message = f"token lacks scope '{needed}'"
            return False
        return True


def tenant_filter(request, queryset, field: str = "tenant_id"):
    """Limit a queryset to the token's tenant; platform tokens see every tenant.

    Other tenants' rows simply do not exist for a tenant token, so lookups give 404, never 403.
    """
    principal = request.user
    if isinstance(principal, TokenPrincipal) and principal.tenant_id is not None:
        return queryset.filter(**{field: principal.tenant_id})
    return queryset
