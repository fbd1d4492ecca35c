"""Integration secrets (``IntegrationSecret``): set them, and check a request against them.

``set_secret`` is the one writer (the admin and ``manage.py set_integration_secret`` call it);
it audits the change without the secret. ``check_signature`` raises ``Unauthenticated`` (401)
when the tenant has a secret for the kind and the request is not signed with it.
"""
from __future__ import annotations

import secrets as stdlib_secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework import status

from apps.audit.services import record
from apps.core import clock
from apps.core.errors import ApplicationError
from apps.delivery import crypto
from apps.tenants.models import Tenant

from ..models import IntegrationSecret
from .signature import SignatureError, verify

DEFAULT_HEADER = "X-Grafana-Alerting-Signature"


class BadSignature(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "bad_signature"


def set_secret(*, tenant: Tenant, kind: str, actor: Any, secret: str | None = None, header: str = DEFAULT_HEADER,
               timestamp_header: str = "") -> str:
    """Create or replace ``tenant``'s secret for ``kind`` and return it (generated when None).

    The plain secret is returned once and stored only encrypted (FIELD_ENCRYPTION_KEYS).
    """
    if kind not in IntegrationSecret.Kind.values:
        raise ValueError(f"unknown integration {kind!r}; known: {', '.join(IntegrationSecret.Kind.values)}")
    secret = secret or stdlib_secrets.token_urlsafe(32)
    if len(secret) < 16:
        raise ValueError("secret: at least 16 characters")
    header = (header or DEFAULT_HEADER).strip()
    now = clock.now()
    with transaction.atomic():
        row, created = IntegrationSecret.objects.update_or_create(
            tenant=tenant, kind=kind, defaults={
                "secret_encrypted": crypto.encrypt(secret, settings.FIELD_ENCRYPTION_KEYS), "header": header,
                "timestamp_header": (timestamp_header or "").strip(), "updated_at": now},
            create_defaults={
                "secret_encrypted": crypto.encrypt(secret, settings.FIELD_ENCRYPTION_KEYS), "header": header,
                "timestamp_header": (timestamp_header or "").strip(), "created_at": now, "updated_at": now})
        record("integration_secret.set" if created else "integration_secret.rotated", actor=actor, target=row,
               tenant=tenant.pk, data={"kind": kind, "header": header, "timestamp_header": row.timestamp_header})
    return secret


def delete_secret(*, tenant: Tenant, kind: str, actor: Any) -> bool:
    """Remove the secret (requests of ``kind`` are accepted unsigned again); audited. False if none."""
    with transaction.atomic():
        row = IntegrationSecret.objects.filter(tenant=tenant, kind=kind).first()
        if row is None:
            return False
        record("integration_secret.deleted", actor=actor, target=row, tenant=tenant.pk, data={"kind": kind})
        row.delete()
    return True


def check_signature(*, tenant_id: int, kind: str, body: bytes, headers: Any) -> None:
    """Raise ``BadSignature`` (401) if the tenant has a ``kind`` secret and the request is not
    signed with it; nothing to check otherwise. ``headers``: ``request.headers``."""
    row = IntegrationSecret.objects.filter(tenant_id=tenant_id, kind=kind).first()
    if row is None:
        return
    try:
        secret = crypto.decrypt(row.secret_encrypted, settings.FIELD_ENCRYPTION_KEYS)
    except crypto.CryptoError as exc:
        # A secret we cannot read must not open the door: refuse, and say why in the logs.
        raise ApplicationError(f"the {kind} secret of this tenant cannot be decrypted ({exc})",
                               code="secret_unreadable", status_code=500) from None
    try:
        verify(secret=secret, body=body, signature=headers.get(row.header), header=row.header,
               timestamp=headers.get(row.timestamp_header) if row.timestamp_header else None,
               timestamp_header=row.timestamp_header, now=clock.now().timestamp(),
               max_skew=settings.INTEGRATIONS_SIGNATURE_MAX_SKEW_SECONDS)
    except SignatureError as exc:
        raise BadSignature(str(exc), details={"header": row.header}) from None
