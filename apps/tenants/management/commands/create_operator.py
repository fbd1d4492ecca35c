import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import record
from apps.tenants.models import Tenant, TenantMembership

GROUPS = ("operators", "governance", "auditors")


class Command(BaseCommand):
    help = "Create (or update) a console user in a staff group; reads the password from stdin."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password-stdin", action="store_true", required=True)
        parser.add_argument("--group", choices=GROUPS, default="operators")
        parser.add_argument("--tenant", help="limit the user to this tenant (a tenant member, not staff)")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, username, password_stdin, group, tenant, superuser, **options):
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("no password on stdin")
        User = get_user_model()
        user = User.objects.filter(username=username).first() or User(username=username)
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("password: " + " ".join(exc.messages))
        created = user.pk is None
        user.set_password(password)
        # Tenant members see only their tenant's console; staff groups see everything.
        user.is_staff = (tenant is None and group == "governance") or superuser
        user.is_superuser = superuser
        user.save()
        user.groups.add(Group.objects.get_or_create(name=group)[0])
        if tenant:
            tenant_obj = Tenant.objects.filter(slug=tenant).first()
            if tenant_obj is None:
                raise CommandError(f"tenant {tenant!r} does not exist")
            TenantMembership.objects.get_or_create(user=user, tenant=tenant_obj)
        record("user.created" if created else "user.updated", target=user, data={"group": group, "tenant": tenant})
        self.stdout.write(user.username)
