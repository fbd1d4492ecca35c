from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    label = "tenants"

    def ready(self) -> None:
        from . import active
        from .models import Tenant

        # The process that changes a tenant sees the change at once; the others within active.TTL.
        post_save.connect(active.on_tenant_changed, sender=Tenant, dispatch_uid="tenants.active.saved")
        post_delete.connect(active.on_tenant_changed, sender=Tenant, dispatch_uid="tenants.active.deleted")
