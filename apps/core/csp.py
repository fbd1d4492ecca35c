"""Content-Security-Policy for every HTML response (Django 5.2 has no built-in CSP).

The console loads its script and styles from /static only (static/console/console.js), so the
policy allows no inline script or style and no other origin; ``frame-ancestors 'none'`` is the
modern form of X-Frame-Options DENY. A view that already set the header (a stricter or a
documented looser policy) keeps its own. Non-HTML responses (JSON API, /metrics) carry no policy:
browsers apply CSP to documents only.
"""
from __future__ import annotations

from django.conf import settings

DEFAULT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = getattr(settings, "CONTENT_SECURITY_POLICY", "") or DEFAULT_POLICY
        self.header = ("Content-Security-Policy-Report-Only" if getattr(settings, "CSP_REPORT_ONLY", False)
                       else "Content-Security-Policy")

    def __call__(self, request):
        response = self.get_response(request)
        if (self.policy and response.get("Content-Type", "").startswith("text/html")
                and "Content-Security-Policy" not in response and self.header not in response):
            response[self.header] = self.policy
        return response
