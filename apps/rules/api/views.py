"""Rules API (thin): validate the envelope, read through selectors, write through services.

Rules are platform-wide. Platform tokens create, change and disable them; tenant tokens read
them as their tenant sees them (overrides applied, other tenants' overrides hidden) and manage
only their own tenant's overrides. Scopes: rules:read for GET and the dry run, rules:write for
changes. Rule bodies are validated by the pack validator: 422 lists every error, each naming the
rule and the field.
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import clock
from apps.core.parsers import DepthLimitedJSONParser
from apps.core.auth import TokenPrincipal
from apps.core.errors import ApplicationError, NotFound
from apps.core.scopes import RULES_READ, RULES_WRITE
from apps.rules import services
from apps.ingest.samples import parse_samples
from apps.rules.dryrun import dry_run
from apps.rules.effective import tenant_specs, tenant_view
from apps.rules.models import LogRule, RuleOverride
from apps.rules.packs import export_pack
from apps.rules.selectors import get_rule, load_snapshot, revisions_of, spec_of, tenant_rows
from apps.rules.spec import rule_to_dict

from . import serializers as s
from .parsers import PACK_PARSERS

SCOPES = {"GET": RULES_READ, "POST": RULES_WRITE, "PUT": RULES_WRITE, "PATCH": RULES_WRITE,
          "DELETE": RULES_WRITE}
ERRORS = {403: OpenApiResponse(description="Token lacks the scope, or a tenant token tried a platform action"),
          404: OpenApiResponse(description="No such rule")}
INVALID = {422: OpenApiResponse(description="Invalid rule(s): `error.details.errors` lists every problem, "
                                            "each naming the rule and the field")}


def _principal(request) -> TokenPrincipal:
    return request.user


def require_platform(request) -> None:
    if not _principal(request).is_platform:
        raise PermissionDenied("rules are platform-wide: only platform tokens may change them; "
                               "tenant tokens manage their own overrides (/rules/{key}/overrides)")


def present(rule: LogRule, principal: TokenPrincipal, rows: dict | None = None,
            own: dict[int, RuleOverride] | None = None) -> dict:
    """A rule for the API: tenant tokens get their view of it and their own override."""
    data = {"key": rule.key, "version": rule.version, "enabled": rule.enabled, "source": rule.source,
            "updated_at": rule.updated_at, "updated_by": rule.updated_by, "spec": rule.spec}
    if principal.is_platform:
        return data
    view = tenant_view(spec_of(rule), principal.tenant_slug, rows)
    row = (own or {}).get(rule.pk)
    data.update(enabled=view.enabled, spec=rule_to_dict(view),
                override=services.override_to_dict(row) if row else None)
    if data["override"]:
        data["override"].pop("tenant")
    return data


def _tenant_context(principal: TokenPrincipal) -> tuple[dict | None, dict[int, RuleOverride]]:
    if principal.is_platform:
        return None, {}
    own = {o.rule_id: o for o in RuleOverride.objects.filter(tenant_id=principal.tenant_id).select_related("tenant")}
    return tenant_rows(principal.tenant_id, principal.tenant_slug), own


class RuleListView(APIView):
    required_scopes = SCOPES

    @extend_schema(responses={200: s.RuleSerializer(many=True), **ERRORS}, summary="List rules")
    def get(self, request):
        principal = _principal(request)
        rows, own = _tenant_context(principal)
        return Response([present(r, principal, rows, own) for r in LogRule.objects.order_by("key")])

    @extend_schema(request=s.RuleSpecSerializer, responses={201: s.RuleSerializer, 409: OpenApiResponse(
        description="A rule with this id exists"), **ERRORS, **INVALID}, summary="Create a rule (platform tokens)")
    def post(self, request):
        require_platform(request)
        rule = services.rule_create(raw=request.data, actor=request.user, source="api")
        return Response(present(rule, _principal(request)), status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    required_scopes = SCOPES

    @extend_schema(responses={200: s.RuleSerializer, **ERRORS}, summary="One rule")
    def get(self, request, key: str):
        principal = _principal(request)
        rows, own = _tenant_context(principal)
        return Response(present(get_rule(key), principal, rows, own))

    @extend_schema(request=s.RuleSpecSerializer, responses={200: s.RuleSerializer, **ERRORS, **INVALID},
                   summary="Replace a rule (platform tokens)")
    def put(self, request, key: str):
        require_platform(request)
        rule = services.rule_update(key=key, raw=request.data, actor=request.user, source="api")
        return Response(present(rule, _principal(request)))

    @extend_schema(request=s.RuleSpecSerializer(partial=True), responses={200: s.RuleSerializer, **ERRORS, **INVALID},
                   summary="Change some top-level fields of a rule (platform tokens)")
    def patch(self, request, key: str):
        require_platform(request)
        if not isinstance(request.data, dict):
            raise services.RuleInvalid([f"rule '{key}': body must be a mapping of fields"])
        rule = services.rule_patch(key=key, changes=request.data, actor=request.user, source="api")
        return Response(present(rule, _principal(request)))

    @extend_schema(responses={200: s.RuleSerializer, **ERRORS},
                   summary="Disable a rule (platform tokens; rules are never deleted)")
    def delete(self, request, key: str):
        require_platform(request)
        rule = services.rule_disable(key=key, actor=request.user, source="api")
        return Response(present(rule, _principal(request)))


class RuleRevisionsView(APIView):
    required_scopes = SCOPES

    @extend_schema(responses={200: s.RevisionSerializer(many=True), **ERRORS},
                   summary="A rule's versions, newest first (platform tokens)")
    def get(self, request, key: str):
        require_platform(request)  # revisions hold every tenant's pack overrides
        revs = revisions_of(get_rule(key))
        return Response([{"version": r.version, "change": r.change, "source": r.source, "changed_by": r.changed_by,
                          "changed_at": r.changed_at, "spec": r.spec} for r in revs])


TENANT_PARAM = OpenApiParameter("tenant", str, description="Tenant slug (platform tokens; tenant tokens use theirs)")


class RuleOverrideView(APIView):
    required_scopes = SCOPES

    def _tenant(self, request) -> str:
        principal = _principal(request)
        if principal.tenant_slug:
            return principal.tenant_slug
        slug = request.query_params.get("tenant")
        if not slug:
            raise ApplicationError("platform tokens must name the tenant: ?tenant=<slug>",
                                   details={"tenant": ["required"]})
        return slug

    @extend_schema(parameters=[TENANT_PARAM], responses={200: s.OverrideBodySerializer, **ERRORS},
                   summary="The tenant's override of a rule (404 when none)")
    def get(self, request, key: str):
        slug = self._tenant(request)
        row = RuleOverride.objects.filter(rule=get_rule(key), tenant__slug=slug).select_related("tenant").first()
        if row is None:
            raise NotFound(f"no override of rule {key!r} for tenant {slug!r}")
        return Response(services.override_to_dict(row))

    @extend_schema(parameters=[TENANT_PARAM], request=s.OverrideBodySerializer,
                   responses={200: s.OverrideBodySerializer, **ERRORS, **INVALID},
                   summary="Set the tenant's override (replaces the previous one)")
    def put(self, request, key: str):
        row = services.override_set(key=key, tenant=self._tenant(request), body=request.data, actor=request.user)
        return Response(services.override_to_dict(row))

    @extend_schema(parameters=[TENANT_PARAM], responses={204: None, **ERRORS}, summary="Clear the tenant's override")
    def delete(self, request, key: str):
        if not services.override_clear(key=key, tenant=self._tenant(request), actor=request.user):
            raise NotFound(f"no override of rule {key!r} for tenant {self._tenant(request)!r}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class RuleImportView(APIView):
    required_scopes = SCOPES
    parser_classes = [DepthLimitedJSONParser, *PACK_PARSERS]

    @extend_schema(request={"application/json": s.RuleSpecSerializer(many=True), "application/yaml": str},
                   responses={200: s.SyncReportSerializer, **ERRORS, **INVALID},
                   summary="Import a rule pack (YAML or JSON; all-or-nothing; platform tokens)")
    def post(self, request):
        require_platform(request)
        data = request.data
        if isinstance(data, str):
            report = services.pack_import(text=data, actor=request.user, source="api")
        else:
            report = services.pack_import(doc=data, actor=request.user, source="api")
        return Response({"created": report.created, "updated": report.updated, "unchanged": report.unchanged,
                         "disabled": report.disabled})


class _FormatIsOurs(DefaultContentNegotiation):
    """``?format=`` picks the pack format here, not DRF's renderer (which would 404 on "yaml")."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class RuleExportView(APIView):
    required_scopes = SCOPES
    content_negotiation_class = _FormatIsOurs

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["yaml", "json"])],
                   responses={(200, "application/yaml"): str, (200, "application/json"): str, **ERRORS},
                   summary="Export every rule as a pack that import and sync_rules read back (platform tokens)")
    def get(self, request):
        require_platform(request)
        fmt = request.query_params.get("format", "yaml")
        if fmt not in ("yaml", "json"):
            raise ApplicationError("format must be yaml or json", details={"format": [f"unknown {fmt!r}"]})
        text, _ = export_pack(fmt)
        response = HttpResponse(text, content_type="application/json" if fmt == "json"
                                else "application/yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="rules.{fmt}"'
        return response


class RuleTestView(APIView):
    """Dry run. Needs rules:read only because it has no side effects."""

    required_scopes = {"POST": RULES_READ}

    @extend_schema(request=s.DryRunRequestSerializer, responses={200: s.DryRunResponseSerializer, **ERRORS, **INVALID},
                   summary="Dry run: which sample events match which rules, and would a threshold fire")
    def post(self, request):
        body = s.DryRunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        principal = _principal(request)
        tenant = principal.tenant_slug or data.get("tenant") or "dry-run"
        if "rule" in data:
            specs = tenant_specs([services.validate_rule(data["rule"])], tenant)
        else:
            snapshot = load_snapshot()
            specs = [x for x in snapshot.specs if "key" not in data or x.id == data["key"]]
            if "key" in data and not specs:
                raise NotFound(f"rule {data['key']!r} not found")
            specs = tenant_specs(specs, tenant, snapshot.rows.get(tenant, {}))
        events, indices, errors = parse_samples(data.get("lines", data.get("events")), tenant=tenant, now=clock.now())
        return Response(dry_run(specs, events, indices, errors).as_dict())
