"""Every API view answers a method it does not handle with 405, whatever scopes it declares: the
scope check must not answer 403 first (GET /alerts/{id}/report said "token lacks the required
scope" to a token holding every scope)."""
from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


def api_routes(patterns=None, prefix: str = ""):
    """(path with sample arguments, view class) for each DRF view under /api/v1/ (the schema and
    docs views render their own formats)."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            yield from api_routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and route.startswith("api/v1/"):
            view_class = getattr(entry.callback, "view_class", None)
            if view_class is not None and issubclass(view_class, APIView):
                path = re.sub(r"<int:\w+>", "1", route)
                yield "/" + re.sub(r"<(?:\w+:)?\w+>", "x", path), view_class


ROUTES = sorted(set(api_routes()))


def test_the_walk_finds_the_routes_of_every_app():
    paths = {path for path, _ in ROUTES}
    assert {"/api/v1/alerts/1/report", "/api/v1/silences/preview", "/api/v1/alerts/ack-all", "/api/v1/logs",
            "/api/v1/channels/1", "/api/v1/rules/test", "/api/v1/heartbeats/x"} <= paths
    assert len(ROUTES) > 40


@pytest.mark.parametrize("path, view_class", ROUTES, ids=[path for path, _ in ROUTES])
def test_a_method_the_view_lacks_is_405_not_403(api, make_token, path, view_class):
    lacking = [m for m in METHODS if not hasattr(view_class, m)]
    if not lacking:
        pytest.skip("handles every method")
    client = api(make_token(None))  # a platform token with every scope
    for method in lacking:
        resp = getattr(client, method)(path)
        assert resp.status_code == 405, (method, resp.content)
        assert resp.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("method, path", [("get", "/api/v1/alerts/4/report"), ("get", "/api/v1/silences/preview"),
                                          ("get", "/api/v1/rules/test"), ("delete", "/api/v1/logs")])
def test_a_token_without_the_scope_also_gets_405_for_a_missing_method(api, make_token, tenant, method, path):
    resp = getattr(api(make_token(tenant, "metrics:write")), method)(path)
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_a_missing_token_is_still_401_before_the_method(api):
    assert api().get("/api/v1/silences/preview").status_code == 401
