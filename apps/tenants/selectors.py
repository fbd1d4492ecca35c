"""Read side of the tenants app."""
from __future__ import annotations

from typing import Any

from apps.core.errors import NotFound, Unprocessable

from .models import Tenant


def tenant_of_request(principal: Any, slug: str | None) -> Tenant:
    """The tenant an API call manages: the token's own (naming another is 404, as for any object of
    another tenant), or for a platform token the one it names (422 when it names none, 404 for an
    unknown slug)."""
    if principal.tenant_id is not None:
        if slug and slug != principal.tenant_slug:
            raise NotFound(f"no tenant {slug!r}")
        return Tenant.objects.get(pk=principal.tenant_id)
    if not slug:
        raise Unprocessable("tenant: a platform token must name the tenant (slug)", details={"tenant": ["required"]})
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant
