from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"

    def ready(self) -> None:
        from . import active, tokens
        from .models import ApiToken, Tenant

        # The process that changes a tenant or a token sees the change at once; the others within
        # active.TTL and API_TOKEN_CACHE_SECONDS.
        post_save.connect(active.on_tenant_changed, sender=Tenant, dispatch_uid="tenants.active.saved")
        post_delete.connect(active.on_tenant_changed, sender=Tenant, dispatch_uid="tenants.active.deleted")
        for signal, name in ((post_save, "saved"), (post_delete, "deleted")):
            for model in (Tenant, ApiToken):
                signal.connect(tokens.on_token_or_tenant_changed, sender=model,
                               dispatch_uid=f"tenants.tokens.{model.__name__}.{name}")
