"""Webhook endpoints API and manual fallback sends. Thin: validate, call a service, shape the answer.

Tenant tokens see only their tenant's endpoints (others are 404); platform tokens see all and name
the tenant when creating. Scope ``webhooks:write`` for every webhook route, ``alerts:write`` for
the manual fallback sends.
"""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.pagination import NewestFirstCursorPagination
from apps.core.scopes import WEBHOOKS_WRITE
from apps.tenants.selectors import tenant_of_request

from .. import selectors, services
from . import serializers as s

ERRORS = {400: OpenApiResponse(description="invalid input"), 401: OpenApiResponse(description="no/bad token"),
          403: OpenApiResponse(description="missing scope"), 404: OpenApiResponse(description="not found"),
          422: OpenApiResponse(description="refused (e.g. unsafe URL)")}


def _tenant_id(request) -> int | None:
    return request.user.tenant_id


def _endpoint(request, pk: int):
    return get_object_or_404(selectors.endpoints(tenant_id=_tenant_id(request)), pk=pk)


def _with_secret(endpoint, secret: str) -> dict:
    data = s.EndpointSerializer(endpoint).data
    data["secret"] = secret
    return data


class WebhookListView(APIView):
    required_scopes = {"*": WEBHOOKS_WRITE}

    @extend_schema(tags=["webhooks"], responses={200: s.EndpointSerializer(many=True), **ERRORS},
                   summary="List webhook endpoints (secrets are never listed)")
    def get(self, request):
        qs = selectors.endpoints(tenant_id=_tenant_id(request))
        return Response(s.EndpointSerializer(qs, many=True).data)

    @extend_schema(tags=["webhooks"], request=s.EndpointCreateSerializer,
                   responses={201: s.EndpointWithSecretSerializer, **ERRORS},
                   summary="Register a webhook endpoint; the response shows its secret once")
    def post(self, request):
        ser = s.EndpointCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        data = dict(ser.validated_data)
        tenant = tenant_of_request(request.user, data.pop("tenant", None))
        endpoint, secret = services.create_endpoint(tenant=tenant, actor=request.user, **data)
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class WebhookDetailView(APIView):
    required_scopes = {"*": WEBHOOKS_WRITE}

    @extend_schema(tags=["webhooks"], responses={200: s.EndpointSerializer, **ERRORS})
    def get(self, request, pk: int):
        return Response(s.EndpointSerializer(_endpoint(request, pk)).data)

    @extend_schema(tags=["webhooks"], request=s.EndpointUpdateSerializer, responses={200: s.EndpointSerializer, **ERRORS},
                   summary="Change URL, description, minimum severity, event types or enabled")
    def patch(self, request, pk: int):
        endpoint = _endpoint(request, pk)
        ser = s.EndpointUpdateSerializer(data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        endpoint = services.update_endpoint(endpoint=endpoint, actor=request.user, **ser.validated_data)
        return Response(s.EndpointSerializer(endpoint).data)

    @extend_schema(tags=["webhooks"], request=s.EndpointUpdateSerializer, responses={200: s.EndpointSerializer, **ERRORS})
    def put(self, request, pk: int):
        return self.patch(request, pk)

    @extend_schema(tags=["webhooks"], responses={204: None, **ERRORS})
    def delete(self, request, pk: int):
        services.delete_endpoint(endpoint=_endpoint(request, pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateView(APIView):
    required_scopes = {"*": WEBHOOKS_WRITE}

    @extend_schema(tags=["webhooks"], request=None, responses={200: s.RotateSerializer, **ERRORS},
                   summary="New secret (shown once); the old one keeps signing during the overlap")
    def post(self, request, pk: int):
        secret, until = services.rotate_secret(endpoint=_endpoint(request, pk), actor=request.user)
        return Response({"secret": secret, "previous_secret_valid_until": until})


class WebhookTestView(APIView):
    required_scopes = {"*": WEBHOOKS_WRITE}

    @extend_schema(tags=["webhooks"], request=None, responses={200: s.SelfTestSerializer, **ERRORS},
                   summary="Send a signed webhook.test event now and report status, latency and error")
    def post(self, request, pk: int):
        return Response(services.self_test_endpoint(endpoint=_endpoint(request, pk)).as_dict())


class WebhookDeliveriesView(APIView):
    required_scopes = {"*": WEBHOOKS_WRITE}

    @extend_schema(tags=["webhooks"], responses={200: s.DeliverySerializer(many=True), **ERRORS},
                   summary="The endpoint's deliveries, newest first, with their attempts (cursor pages)")
    def get(self, request, pk: int):
        endpoint = _endpoint(request, pk)
        paginator = NewestFirstCursorPagination()
        page = selectors.with_attempt_logs(
            paginator.paginate_queryset(selectors.deliveries_for_endpoint(endpoint.pk), request, view=self))
        return paginator.get_paginated_response(s.DeliverySerializer(page, many=True).data)
