from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import record
from apps.tenants.models import Tenant, validate_slug


class Command(BaseCommand):
    help = "Create a tenant (idempotent) and print its slug."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, slug, name, **options):
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"slug {slug!r}: {exc.messages[0]}")
        tenant, created = Tenant.objects.get_or_create(slug=slug, defaults={"name": name or slug})
        if created:
            record("tenant.created", target=tenant, tenant=tenant, data={"name": tenant.name})
        else:
            self.stderr.write(f"tenant {slug} already exists")
        self.stdout.write(tenant.slug)
