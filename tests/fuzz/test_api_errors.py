"""Regressions found by the schemathesis run: every API error is the one JSON error body."""
from __future__ import annotations

import pytest

from tests.alerts.conftest import make_alert  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def platform(api, make_token):
    return api(make_token(None))


@pytest.mark.parametrize("value", [False, 3, {"a": 1}, [1, 2]])
def test_ack_all_with_a_non_string_filter_is_a_400(platform, value):
    # Was a 500 (TypeError: 'bool' object is not iterable in CommaChoiceField).
    resp = platform.post("/api/v1/alerts/ack-all", {"severity": value}, format="json")
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid" and "severity" in resp.json()["error"]["details"]


def test_ack_all_still_takes_a_list_of_states(platform):
    resp = platform.post("/api/v1/alerts/ack-all", {"state": ["OPEN"]}, format="json")
    assert resp.status_code == 200 and resp.json()["acknowledged"] == 0


@pytest.mark.parametrize("path", ["/api/v1/alerts/null,null", "/api/v1/webhooks/abc/test", "/api/v1/nothing-here",
                                  "/api/v1/silences/1.5"])
def test_an_unmatched_api_url_answers_the_json_error_body(platform, path):
    # Was Django's HTML "Not Found" page: the route wants an integer id.
    resp = platform.get(path)
    assert resp.status_code == 404 and resp["Content-Type"] == "application/json"
    assert resp.json() == {"error": {"code": "not_found", "message": "Not found.", "details": None}}


def test_console_urls_keep_the_html_404(client):
    resp = client.get("/no-such-console-page/")
    assert resp.status_code == 404 and resp["Content-Type"].startswith("text/html")


def _deep(levels: int) -> bytes:
    return b'{"text": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("path", ["/api/v1/alerts/{id}/notes", "/api/v1/silences", "/api/v1/webhooks",
                                  "/api/v1/rules/import", "/api/v1/alerts/ack-all"])
def test_deeply_nested_json_is_a_400_naming_the_limit(platform, make_alert, path):
    # Was an HTML 500 (RecursionError in the json module) on /notes and /silences.
    alert = make_alert()
    resp = platform.post(path.format(id=alert.pk), _deep(100_000), content_type="application/json")
    assert resp.status_code == 400 and resp["Content-Type"] == "application/json"
    assert resp.json()["error"] == {
        "code": "parse_error", "message": "JSON body nested deeper than 64 levels (API_JSON_MAX_DEPTH)",
        "details": None}


def test_json_nesting_up_to_the_limit_still_parses(platform, make_alert, settings):
    settings.API_JSON_MAX_DEPTH = 5
    alert = make_alert()
    ok = platform.post(f"/api/v1/alerts/{alert.pk}/notes", b'{"text": "a [[[[ } string", "x": [[[1]]]}',
                       content_type="application/json")
    assert ok.status_code == 201, ok.content
    deep = platform.post(f"/api/v1/alerts/{alert.pk}/notes", b'{"text": "t", "x": [[[[[1]]]]]}',
                         content_type="application/json")
    assert deep.status_code == 400 and "deeper than 5 levels" in deep.json()["error"]["message"]


def test_deeply_nested_ingest_body_is_a_422(api, make_token, tenant):
    """Ingest parses with orjson, whose own depth limit (1,024) answers 422, the semantics log
    shippers need (they drop on 422 and resend forever on 400)."""
    client = api(make_token(tenant, "logs:write"))
    resp = client.post("/api/v1/logs", b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    assert resp.status_code == 422 and resp["Content-Type"] == "application/json"
    assert "depth limit exceeded" in resp.json()["error"]["message"]
