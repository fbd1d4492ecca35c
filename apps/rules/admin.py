"""Admin for governance: rules edited through a form validated by the pack validator and saved
through the services (versioned, audited), never deleted (disable instead); a read-only revision
history; YAML import/export; and a dry-run page that shows which sample lines match which rules
and whether a threshold would fire. Permissions come from the staff groups (migration 0002)."""
from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from apps.core import clock
from apps.core.errors import ApplicationError
from apps.rules import services
from apps.ingest.samples import parse_samples
from apps.rules.dryrun import dry_run
from apps.rules.effective import tenant_specs
from apps.rules.forms import DryRunForm, ImportForm, LogRuleForm, RuleOverrideForm
from apps.rules.models import LogRule, RuleOverride, RuleRevision
from apps.rules.packs import export_pack
from apps.rules.selectors import load_snapshot
from apps.rules.spec import load_pack


class RevisionInline(admin.TabularInline):
    model = RuleRevision
    extra = 0
    fields = ("version", "change", "source", "changed_by", "changed_at", "spec")
    readonly_fields = fields
    can_delete = False
    ordering = ("-version",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class OverrideInline(admin.TabularInline):
    """Shown for context; overrides are edited on their own page (through the services)."""

    model = RuleOverride
    extra = 0
    fields = ("tenant", "threshold_count", "window_seconds", "severity", "cooldown_seconds", "enabled", "updated_by")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LogRule)
class LogRuleAdmin(admin.ModelAdmin):
    form = LogRuleForm
    list_display = ("key", "name", "category", "severity", "enabled", "threshold_count", "window_seconds",
                    "cooldown_seconds", "version", "source", "updated_at", "updated_by")
    list_filter = ("enabled", "category", "severity", "source")
    search_fields = ("key", "name", "description")
    readonly_fields = ("version", "source", "updated_at", "updated_by")
    inlines = [OverrideInline, RevisionInline]
    actions = ["disable_rules", "export_yaml", "dry_run_selected"]
    change_list_template = "admin/rules/logrule/change_list.html"
    fieldsets = (
        (None, {"fields": ("key", "name", "category", "description", "enabled")}),
        ("Match: levels AND (keywords OR patterns)", {"fields": ("levels", "keywords", "patterns")}),
        ("Threshold", {"fields": ("threshold_count", "window", "group_by", "cooldown", "auto_resolve")}),
        ("Spike / log anomaly", {"fields": ("kind_options",)}),
        ("Alert", {"fields": ("severity", "recommended_action", "labels", "overrides")}),
        ("History", {"fields": ("version", "source", "updated_at", "updated_by")}),
    )

    def has_delete_permission(self, request, obj=None):
        return False  # rules are disabled, never deleted: alerts and revisions refer to them

    def save_model(self, request, obj, form, change):
        if change:
            rule = services.rule_update(key=obj.key, raw=form.spec_raw, actor=request.user, source="admin")
        else:
            rule = services.rule_create(raw=form.spec_raw, actor=request.user, source="admin")
        obj.pk = rule.pk
        obj.refresh_from_db()

    @admin.action(description="Disable selected rules", permissions=["change"])
    def disable_rules(self, request, queryset):
        done = 0
        for key in queryset.filter(enabled=True).values_list("key", flat=True):
            services.rule_disable(key=key, actor=request.user, source="admin")
            done += 1
        self.message_user(request, f"Disabled {done} rule(s).", messages.SUCCESS)

    @admin.action(description="Export selected rules as YAML")
    def export_yaml(self, request, queryset):
        text, _ = export_pack("yaml", keys=list(queryset.values_list("key", flat=True)))
        return _download(text, "yaml")

    @admin.action(description="Dry run selected rules")
    def dry_run_selected(self, request, queryset):
        keys = ",".join(queryset.values_list("key", flat=True))
        return HttpResponseRedirect(reverse("admin:rules_logrule_dry_run") + "?" + urlencode({"rules": keys}))

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("dry-run/", wrap(self.dry_run_view), name="rules_logrule_dry_run"),
            path("import/", wrap(self.import_view), name="rules_logrule_import"),
            path("export/", wrap(self.export_view), name="rules_logrule_export"),
        ] + super().get_urls()

    def dry_run_view(self, request):
        """Paste sample lines; see matches per event and per group whether the threshold would fire."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        keys = list(LogRule.objects.order_by("key").values_list("key", flat=True))
        initial = {"rules": [k for k in request.GET.get("rules", "").split(",") if k]}
        form = DryRunForm(request.POST or None, keys=keys, initial=initial)
        result = None
        if request.method == "POST" and form.is_valid():
            tenant = form.cleaned_data["tenant"].strip() or "dry-run"
            try:
                if form.cleaned_data["rule_yaml"].strip():
                    text = form.cleaned_data["rule_yaml"]
                    specs = tenant_specs(load_pack(text if "rules:" in text else f"rules:\n- {_indent(text)}"),
                                         tenant)
                else:
                    snapshot = load_snapshot()
                    chosen = set(form.cleaned_data["rules"])
                    specs = tenant_specs([s for s in snapshot.specs if not chosen or s.id in chosen], tenant,
                                         snapshot.rows.get(tenant, {}))
                events, indices, errors = parse_samples(form.cleaned_data["samples"], tenant=tenant, now=clock.now())
                result = dry_run(specs, events, indices, errors)
            except ValueError as exc:  # RulePackError: the unsaved rule is invalid
                for error in getattr(exc, "errors", [str(exc)]):
                    form.add_error("rule_yaml", error)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "result": result, "title": "Dry run rules"}
        return TemplateResponse(request, "admin/rules/logrule/dry_run.html", context)

    def import_view(self, request):
        """Import a pack (all-or-nothing, same validation as sync_rules; nothing is disabled)."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                report = services.pack_import(text=form.text(), actor=request.user, source="admin")
            except ApplicationError as exc:
                for error in getattr(exc, "errors", [exc.message]):
                    form.add_error("pack", error)
            else:
                self.message_user(request, f"Imported: {report.summary()}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:rules_logrule_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Import rules"}
        return TemplateResponse(request, "admin/rules/logrule/import.html", context)

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        fmt = "json" if request.GET.get("format") == "json" else "yaml"
        return _download(export_pack(fmt)[0], fmt)


def _indent(text: str) -> str:
    return text.strip().replace("\n", "\n  ")


def _download(text: str, fmt: str) -> HttpResponse:
    response = HttpResponse(text, content_type="application/json" if fmt == "json" else "application/yaml")
    response["Content-Disposition"] = f'attachment; filename="rules.{fmt}"'
    return response


@admin.register(RuleOverride)
class RuleOverrideAdmin(admin.ModelAdmin):
    """Tenant overrides; saved and deleted through the services (audited, ruleset version bumped)."""

    list_display = ("rule", "tenant", "threshold_count", "window_seconds", "severity", "cooldown_seconds", "enabled",
                    "updated_at", "updated_by")
    list_select_related = ("rule", "tenant")
    list_filter = ("tenant",)
    raw_id_fields = ("rule", "tenant")
    fields = ("rule", "tenant", "threshold_count", "window_seconds", "severity", "cooldown_seconds", "enabled")

    form = RuleOverrideForm

    def save_model(self, request, obj, form, change):
        row = services.override_set(key=obj.rule.key, tenant=obj.tenant, body=form.body, actor=request.user)
        obj.pk = row.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.override_clear(key=obj.rule.key, tenant=obj.tenant, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset.select_related("rule", "tenant"):
            self.delete_model(request, obj)
