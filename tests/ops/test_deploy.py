"""Deployment hardening: `check --deploy` with production settings, security headers and CSP on
console pages, the liveness probe, the Prometheus rules, and the Dockerfile's essentials."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.support.processes import child_env

BASE = Path(settings.BASE_DIR)
PRODUCTION = {
    "DEBUG": "0", "SECRET_KEY": "x7!Qm2#vR9pL4@kZ8sT1&wY6^bN3*cF5(hJ0)dG-e8Va1Ur5Xo3Ti7Wy", "ALLOWED_HOSTS": "alerts.example.com",
    "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "31536000", "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1", "BEHIND_TLS_PROXY": "1", "CSRF_TRUSTED_ORIGINS": "https://alerts.example.com",
}


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=BASE, capture_output=True,
                            text=True, timeout=120, env=child_env(**PRODUCTION))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.findall(r"\(([\w.]+\.[WE]\d+)\)", output) == [], output
    assert "System check identified no issues" in output, output


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/login/", settings.LOGIN_URL])
def test_html_pages_carry_the_csp(path):
    response = Client().get(path)
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_json_api_has_no_csp():
    assert "Content-Security-Policy" not in Client().get("/api/v1/health")


@pytest.mark.django_db
def test_liveness_probe_needs_no_allowed_host_nor_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["alerts.example.com"]
    response = Client(HTTP_HOST="127.0.0.1:8000").get("/-/live")
    assert response.status_code == 200 and response.content == b"ok\n"
    assert Client(HTTP_HOST="127.0.0.1:8000").get("/api/v1/health").status_code == 400  # others still checked


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: .ci/run installs it")
def test_prometheus_rules_are_valid():
    result = subprocess.run(["promtool", "check", "rules", str(BASE / "alertcenter" / "prometheus-rules.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_essentials():
    text = (BASE / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", text, re.M), "runs as a non-root user"
    assert "collectstatic" in text and "alertcenter/gunicorn.conf.py" in text
    assert "HEALTHCHECK" in text and "/-/live" in text
    ignored = (BASE / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


@pytest.mark.django_db
def test_api_docs_page_gets_only_the_style_relaxation_redoc_needs():
    response = Client().get("/api/docs/")
    csp = response["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in csp and "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
