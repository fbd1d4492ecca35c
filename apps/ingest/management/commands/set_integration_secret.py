"""``manage.py set_integration_secret TENANT grafana``: set (or rotate, or remove) the HMAC secret
a tenant's Grafana webhooks must be signed with. Prints a generated secret once."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.ingest.integrations.secrets import DEFAULT_HEADER, delete_secret, set_secret
from apps.ingest.models import IntegrationSecret
from apps.tenants.models import Tenant


class Command(BaseCommand):
    help = ("Set the HMAC secret of a tenant's inbound integration (grafana): generated unless --secret is "
            "given, printed once, stored encrypted; audited. --delete removes it (requests accepted unsigned).")

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("kind", choices=IntegrationSecret.Kind.values)
        parser.add_argument("--secret", help="use this secret (at least 16 characters) instead of a generated one")
        parser.add_argument("--header", default=DEFAULT_HEADER, help=f"signature header (default {DEFAULT_HEADER})")
        parser.add_argument("--timestamp-header", default="",
                            help="timestamp header; when set the signature covers '<timestamp>:<body>'")
        parser.add_argument("--delete", action="store_true", help="remove the secret instead")

    def handle(self, *args, **opts):
        tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
        if tenant is None:
            raise CommandError(f"unknown tenant {opts['tenant']!r}")
        actor = "manage.py set_integration_secret"
        if opts["delete"]:
            removed = delete_secret(tenant=tenant, kind=opts["kind"], actor=actor)
            self.stdout.write(f"{opts['kind']} secret of {tenant.slug}: {'removed' if removed else 'none was set'}")
            return
        try:
            secret = set_secret(tenant=tenant, kind=opts["kind"], actor=actor, secret=opts["secret"],
                                header=opts["header"], timestamp_header=opts["timestamp_header"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        # The note on stderr, the secret alone on stdout: SECRET=$(manage.py set_integration_secret ...) works.
        self.stderr.write(f"{opts['kind']} secret of {tenant.slug} set (header {opts['header']}"
                          + (f", timestamp header {opts['timestamp_header']}" if opts["timestamp_header"] else "")
                          + "). Shown once:")
        self.stdout.write(secret)
