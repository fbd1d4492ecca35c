"""Regressions found by the schemathesis run: every API error is the one JSON error body."""
from __future__ import annotations

import pytest

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
