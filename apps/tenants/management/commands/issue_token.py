from django.core.management.base import BaseCommand, CommandError

from apps.tenants.models import Tenant
from apps.tenants.tokens import issue_token


class Command(BaseCommand):
    help = "Issue an API token for a tenant (or the platform) and print it; it is shown only once."

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--tenant", help="tenant slug the token is bound to")
        who.add_argument("--platform", action="store_true", help="a platform token: sees every tenant")
        parser.add_argument("--scopes", required=True, help="comma-separated, e.g. logs:write,alerts:read")
        parser.add_argument("--name", default="")

    def handle(self, tenant, platform, scopes, name, **options):
        tenant_obj = None
        if tenant:
            tenant_obj = Tenant.objects.filter(slug=tenant).first()
            if tenant_obj is None:
                raise CommandError(f"tenant {tenant!r} does not exist (create it with create_tenant)")
        try:
            _, plain = issue_token(name=name or f"{tenant or 'platform'} token", scopes=scopes, tenant=tenant_obj)
        except ValueError as exc:
            raise CommandError(f"--scopes: {exc}")
        self.stdout.write(plain)
