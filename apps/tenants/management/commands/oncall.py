from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core import clock
from apps.tenants.models import OnCallRotation, Tenant
from apps.tenants.oncall import current_shift, next_handoffs


class Command(BaseCommand):
    help = "Print who is on call now in a tenant's rotations (or one of them) and the next hand-offs."

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("rotation", nargs="?", default="", help="rotation name (default: every rotation)")
        parser.add_argument("--next", type=int, default=3, dest="count", help="hand-offs to show (default 3)")

    def handle(self, tenant, rotation, count, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"no tenant {tenant!r}")
        if count < 0:
            raise CommandError("--next must be >= 0")
        rotations = list(OnCallRotation.objects.filter(tenant=found).order_by("name"))
        if rotation:
            rotations = [r for r in rotations if r.name == rotation]
            if not rotations:
                raise CommandError(f"tenant {tenant!r} has no rotation {rotation!r}")
        now = clock.now()
        ids = {u for r in rotations for u in r.users}
        names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
        for r in rotations:
            shift = current_shift(r, now)
            self.stdout.write(f"{r.name}: {names.get(shift.user_id, f'user {shift.user_id}')} on call now "
                              f"({'since' if shift.starts_at <= now else 'from'} {shift.starts_at:%Y-%m-%d %H:%M %Z})")
            for s in next_handoffs(r, now, count=count):
                self.stdout.write(f"  {s.starts_at:%Y-%m-%d %H:%M %Z} -> {names.get(s.user_id, f'user {s.user_id}')}")
        if not rotations:
            self.stdout.write(f"tenant {tenant} has no on-call rotation")
