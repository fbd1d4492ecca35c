"""One application error type, and the DRF exception handler that renders every error alike.

Every API error body is ``{"error": {"code": ..., "message": ..., "details": ...}}`` so clients
(and log shippers) can branch on ``code`` without parsing prose.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found, server_error
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .readable import plain_text


class ApplicationError(Exception):
    """An expected failure with a stable machine-readable code and an HTTP status."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None,
                 status_code: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(ApplicationError):
    """An impossible state transition or a lost race (HTTP 409)."""

    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class Unprocessable(ApplicationError):
    """Input that can never be valid (HTTP 422): clients must not resend it."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "unprocessable"


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details}}


def validation_message(detail: Any) -> str:
    """DRF's error detail, however nested, as one line: ``name: This field is required.;
    event_types[0]: "x" is not a valid choice.``, the first message of each field or list item."""
    return "; ".join(_error_lines(detail, "")) or "invalid request"


def _error_lines(detail: Any, where: str) -> list[str]:
    if isinstance(detail, dict):  # by field name, or by index for a ListField's items
        return [line for key, value in detail.items()
                for line in _error_lines(value, f"{where}[{key}]" if isinstance(key, int) else
                                         f"{where}.{key}" if where else str(key))]
    if isinstance(detail, list):
        if any(isinstance(item, (dict, list)) for item in detail):  # a list of objects: one entry each
            return [line for index, item in enumerate(detail) if item
                    for line in _error_lines(item, f"{where}[{index}]")]
        if where:  # a field's messages: the first says what to fix
            detail = detail[:1]
        return [line for item in detail for line in _error_lines(item, where)]
    text = plain_text(detail)
    return [f"{where}: {text}" if where else text]


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Map ApplicationError and every DRF/Django exception to the one error body."""
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=exc.headers)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or restarting: tell clients (and log shippers) to come back later
        # instead of answering 500, which some treat as "drop".
        return Response(error_body("unavailable", "database unavailable, retry later"), status=503,
                        headers={"Retry-After": "5"})
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, drf_exceptions.ValidationError):
        code = "invalid"
    message = validation_message(detail) if detail is not None else str(exc)
    details = detail if isinstance(detail, (dict, list)) else None
    response.data = error_body(code, message, details)
    return response


@csrf_exempt  # a POST to a wrong API URL is a 404 (as without this route), not a CSRF failure
def api_not_found(request, *args, **kwargs):
    """The last /api/v1/ route: an unmatched API URL answers JSON even under DEBUG, where Django
    shows its technical 404 page instead of calling ``handler404``."""
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def api_aware_404(request, exception=None):
    """``handler404``: a URL under /api/ that matches no route (e.g. ``/alerts/abc``, where the
    route wants an integer) answers the one error body as JSON; other paths get Django's page."""
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return page_not_found(request, exception)


def api_aware_500(request):
    """``handler500``: an unexpected exception under /api/ answers the one error body as JSON (the
    traceback goes to the log, never to the client); other paths get Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("server_error", "internal server error"), status=500)
    return server_error(request)
