"""``create_operator USER --password-stdin [--tenant SLUG ...] [--role ROLE]``: a console user who
can do what their role says as soon as they sign in.

With ``--tenant`` (repeatable) the user is a tenant member (``TenantMembership``) with role
viewer, operator or admin, and sees only those tenants. Without it the user is staff in the
group of a platform role (operator, governance, auditor), and sees every tenant.
"""
from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.audit.services import record
from apps.tenants.models import Tenant, TenantMembership

# Platform role -> staff group (groups and their permissions: tenants 0002, alerts 0003).
PLATFORM_GROUPS = {"operator": "operators", "governance": "governance", "auditor": "auditors"}
TENANT_ROLES = tuple(TenantMembership.Role.values)
GROUP_ROLES = {group: role for role, group in PLATFORM_GROUPS.items()}


class Command(BaseCommand):
    help = ("Create (or update) a console user: a member of --tenant (role viewer, operator or admin), or, "
            "without --tenant, staff with a platform role (operator, governance, auditor). Reads the password "
            "from stdin; prints the username.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password-stdin", action="store_true", required=True)
        parser.add_argument("--tenant", action="append", default=[], metavar="SLUG",
                            help="make the user a member of this tenant (repeat for several)")
        parser.add_argument("--role", choices=sorted(set(TENANT_ROLES) | set(PLATFORM_GROUPS)),
                            help="with --tenant: viewer, operator (default) or admin; "
                                 "without: operator (default), governance or auditor")
        parser.add_argument("--group", choices=sorted(GROUP_ROLES),
                            help="the staff group of a platform role (same as --role operator|governance|auditor)")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, username, password_stdin, tenant, role, group, superuser, **options):
        role = self._role(role, group, bool(tenant))
        tenants = self._tenants(tenant)
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
        with transaction.atomic():
            user.set_password(password)
            # Tenant members must not be staff: staff see every tenant.
            user.is_staff = superuser or not tenants
            user.is_superuser = superuser
            user.save()
            if tenants:
                for tenant_obj in tenants:
                    TenantMembership.objects.update_or_create(user=user, tenant=tenant_obj, defaults={"role": role})
            else:
                user.groups.add(Group.objects.get_or_create(name=PLATFORM_GROUPS[role])[0])
            record("user.created" if created else "user.updated", target=user,
                   data={"role": role, "tenants": [t.slug for t in tenants], "staff": user.is_staff})
        self.stdout.write(user.username)

    @staticmethod
    def _role(role: str | None, group: str | None, member: bool) -> str:
        if group:
            if member:
                raise CommandError("--group is a staff group; with --tenant use --role viewer|operator|admin")
            if role and role != GROUP_ROLES[group]:
                raise CommandError(f"--group {group} and --role {role} disagree; give one of them")
            return GROUP_ROLES[group]
        role = role or "operator"
        allowed = TENANT_ROLES if member else tuple(PLATFORM_GROUPS)
        if role not in allowed:
            where = "with --tenant" if member else "without --tenant (a staff user)"
            raise CommandError(f"--role {role} is not a role {where}; choose one of {', '.join(allowed)}")
        return role

    @staticmethod
    def _tenants(slugs: list[str]) -> list[Tenant]:
        """Every named tenant, checked before anything is written."""
        found = {t.slug: t for t in Tenant.objects.filter(slug__in=slugs)}
        missing = [s for s in slugs if s not in found]
        if missing:
            raise CommandError(f"tenant {missing[0]!r} does not exist (create it with create_tenant)")
        return [found[s] for s in dict.fromkeys(slugs)]
