from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"

    def ready(self) -> None:
        from . import active, tokens
        from .models import ApiToken, PluginCount, Tenant

        # The process that changes a tenant or a token sees the change at once; the others within
        # active.TTL and API_TOKEN_CACHE_SECONDS.
        post_save.connect(active.on_tenant_changed, sender=Tenant, dispatch_uid="tenants.active.saved")
        post_delete.connect(active.on_tenant_changed, sender=Tenant, dispatch_uid="tenants.active.deleted")
        post_save.connect(_recount_loaded, sender=PluginCount, dispatch_uid="tenants.plugincount.loaded")
        for signal, name in ((post_save, "saved"), (post_delete, "deleted")):
            for model in (Tenant, ApiToken):
                signal.connect(tokens.on_token_or_tenant_changed, sender=model,
                               dispatch_uid=f"tenants.tokens.{model.__name__}.{name}")


def _recount_loaded(sender, instance, raw: bool = False, **kwargs) -> None:
    """A PluginCount written by ``loaddata`` (raw) takes its count from the plugins instead."""
    if raw:
        sender.recount(instance.tenant_id)
