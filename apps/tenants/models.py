from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, validate_email
from django.db import models

SLUG_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"
validate_slug = RegexValidator(SLUG_RE, "lower-case letters, digits, '-' and '_', starting with a letter or digit")
validate_e164 = RegexValidator(r"^\+[1-9]\d{6,14}$", "phone numbers must be in E.164 form, e.g. +14155550100")


class Tenant(models.Model):
    slug = models.CharField(max_length=63, unique=True, validators=[validate_slug])
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    # The platform tenant owns Alert Center's own alerts (self-monitoring).
    is_platform = models.BooleanField(default=False)
    # Per-tenant delivery retry schedule in seconds; empty means the global default.
    retry_schedule = models.JSONField(default=list, blank=True)
    # Empty means settings.TENANT_MAX_PLUGINS; plugins are auto-registered by ingest up to it.
    max_plugins = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most plugins this tenant may have; empty: TENANT_MAX_PLUGINS")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Plugin(models.Model):
    # Counted per tenant by database triggers (PluginCount, migration 0006). On SQLite a migration
    # that rebuilds this table drops them: such a migration must create them again
    # (tests/tenants/test_plugin_count.py fails without them).
    # No index of its own: the (tenant, slug) unique index serves lookups by tenant. With both, the
    # planner took the tenant index for a (tenant, slug) probe whenever it lacked statistics (a
    # storm's new plugins) and read every plugin of the tenant per probe.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="plugins", db_index=False)
    slug = models.CharField(max_length=63, validators=[validate_slug])
    name = models.CharField(max_length=200, blank=True)
    owner = models.CharField(max_length=200, blank=True, help_text="Team or person responsible")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant__slug", "slug"]
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="plugin_unique_slug_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.slug}"


class PluginCount(models.Model):
    """How many plugins a tenant has, for intake's plugin limit (``apps.ingest.tenancy``).

    Kept by database triggers on the plugin table (migration 0006), so every path that adds or
    removes plugins counts: intake, the detect worker, the admin, a tenant's deletion. Counting the
    tenant's plugins at every request that registers one grew with the tenant: 30 ms a request at
    2,000 plugins for each of 50 tenants (a storm of new plugins pays it ten times a second), held
    under the tenants' row locks. Never written by Django, except by ``loaddata``, after which the
    count is taken again from the plugins (``recount``: a dump's count may be off its plugins).
    """

    tenant = models.OneToOneField(Tenant, primary_key=True, on_delete=models.CASCADE, related_name="+")
    n = models.IntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.n} plugins"

    @classmethod
    def recount(cls, tenant_id: int) -> None:
        """Set the tenant's count from its plugins (after a ``loaddata``; the triggers keep it after)."""
        cls.objects.filter(tenant_id=tenant_id).update(n=Plugin.objects.filter(tenant_id=tenant_id).count())


class ApiToken(models.Model):
    """A scoped API token. Only its prefix and SHA-256 digest are stored; see apps.tenants.tokens."""

    name = models.CharField(max_length=200)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens",
        help_text="Empty for a platform token (sees every tenant)",
    )
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class TenantMembership(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        OPERATOR = "operator", "Operator"
        ADMIN = "admin", "Admin"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} as {self.role}"


class FallbackContact(models.Model):
    """Where a tenant's alerts go when its webhooks keep failing (email or SMS)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="fallback_contacts")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=254)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "kind", "value"], name="fallback_unique_contact")
        ]

    def clean(self) -> None:
        check_contact(self.kind, self.value)

    def save(self, *args, **kwargs):
        # Validate on every save so commands and services cannot store a bad contact either.
        self.full_clean(exclude=["tenant"])
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


class ContactMethod(models.Model):
    """How a user is paged when an escalation step reaches them (email address or E.164 phone).

    Only verified methods are paged: a typo in a phone number must not page a stranger at 3 am.
    ``position`` orders a user's methods of one kind (lowest first).
    """

    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact_methods")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=254)
    verified = models.BooleanField(default=False, help_text="Only verified methods are paged")
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user_id", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "kind", "value"], name="contact_method_unique")]

    def clean(self) -> None:
        check_contact(self.kind, self.value)

    def save(self, *args, **kwargs):
        self.full_clean(exclude=["user"])
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def check_contact(kind: str, value: str) -> None:
    """Raise ValidationError on ``value`` unless it is a valid address for ``kind`` (email / sms)."""
    if kind == "email":
        try:
            validate_email(value)
        except ValidationError:
            raise ValidationError({"value": f"{value!r} is not a valid email address"})
    elif kind == "sms":
        try:
            validate_e164(value)
        except ValidationError:
            raise ValidationError({"value": f"{value!r} is not an E.164 phone number (e.g. +14155550100)"})


class OnCallRotation(models.Model):
    """Who of ``users`` (user ids, in turn order) is on call: the shift changes every day or every
    week at ``handoff_time`` (wall clock in ``timezone``; weekly on ``handoff_weekday``, 0 = Monday),
    counting from ``start_date``. The arithmetic is ``apps.tenants.oncall``."""

    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="oncall_rotations")
    name = models.CharField(max_length=63, validators=[validate_slug])
    users = models.JSONField(default=list, help_text="User ids in turn order, e.g. [3, 7, 12]")
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.WEEKLY)
    handoff_time = models.TimeField(help_text="Wall-clock time of the hand-off in the rotation's time zone")
    handoff_weekday = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Weekly rotations: day of the hand-off, 0 = Monday ... 6 = Sunday")
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin")
    start_date = models.DateField(help_text="The first user's first shift starts on this date (weekly: on the "
                                            "first hand-off weekday on or after it)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant_id", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="oncall_rotation_unique_name")]

    def clean(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from django.contrib.auth import get_user_model

        errors = {}
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = f"{self.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)"
        if self.period == self.Period.WEEKLY and self.handoff_weekday is None:
            errors["handoff_weekday"] = "a weekly rotation needs a hand-off weekday (0 = Monday ... 6 = Sunday)"
        elif self.handoff_weekday is not None and self.handoff_weekday > 6:
            errors["handoff_weekday"] = "must be 0 (Monday) ... 6 (Sunday)"
        users = self.users
        if not isinstance(users, list) or not users or not all(isinstance(u, int) and not isinstance(u, bool)
                                                               for u in users):
            errors["users"] = "must be a non-empty list of user ids"
        else:
            known = set(get_user_model().objects.filter(pk__in=users).values_list("pk", flat=True))
            missing = [u for u in users if u not in known]
            if missing:
                errors["users"] = f"no user with id {', '.join(map(str, missing))}"
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        self.full_clean(exclude=["tenant"])
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.name}"
