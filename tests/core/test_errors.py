"""Errors under /api/ are the one JSON error body, whatever failed and whether DEBUG is on; the
console keeps Django's HTML pages."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.exceptions import ErrorDetail

from apps.core.errors import validation_message

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.core.urls_failing")]

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found.", "details": None}}


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_url_is_a_json_404(settings, debug):
    # Was Django's HTML page under DEBUG, which shows its technical 404 instead of calling handler404.
    settings.DEBUG = debug
    for resp in (Client().get("/api/v1/nope"), Client(enforce_csrf_checks=True).post("/api/v1/nope/deeper"),
                 Client().get("/api/v1"), Client(enforce_csrf_checks=True).post("/api/v1")):
        assert resp.status_code == 404 and resp["Content-Type"] == "application/json"
        assert resp.json() == NOT_FOUND


@pytest.mark.parametrize("path", ["/api/v1/broken", "/api/v1/broken-plain"])
def test_an_exception_in_an_api_view_is_a_json_500(path):
    # Was Django's HTML "Server Error (500)": alertcenter.urls named no handler500.
    resp = Client(raise_request_exception=False).get(path)
    assert resp.status_code == 500 and resp["Content-Type"] == "application/json"
    assert resp.json() == {"error": {"code": "server_error", "message": "internal server error", "details": None}}
    assert resp["X-Request-ID"]  # JSON log lines carry it with the traceback


def test_console_errors_keep_the_html_pages():
    client = Client(raise_request_exception=False)
    for path, status in (("/broken-page", 500), ("/no-such-page/", 404)):
        resp = client.get(path)
        assert resp.status_code == status and resp["Content-Type"].startswith("text/html"), path


def test_validation_messages_flatten_any_nesting_into_plain_words():
    detail = {
        "name": [ErrorDetail("This field is required.", "required"), ErrorDetail("second", "x")],
        "event_types": {0: [ErrorDetail('"x" is not a valid choice.', "invalid_choice")]},
        "config": {"webhook_url": [ErrorDetail("Enter a valid URL.", "invalid")]},
        "samples": [{}, {"value": [ErrorDetail("A valid number is required.", "invalid")]}],
        "pattern": [b"missing ): (("],
    }
    assert validation_message(detail) == (
        'name: This field is required.; event_types[0]: "x" is not a valid choice.; '
        "config.webhook_url: Enter a valid URL.; samples[1].value: A valid number is required.; "
        "pattern: missing ): ((")
    assert validation_message([ErrorDetail("one", "a"), ErrorDetail("two", "b")]) == "one; two"
    assert validation_message({}) == "invalid request"
