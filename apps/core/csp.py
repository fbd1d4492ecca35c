"""Content-Security-Policy for every HTML response (Django 5.2 has no built-in CSP).

The console loads its script and styles from /static only (static/console/console.js), so the
policy allows no inline script or style and no other origin; ``frame-ancestors 'none'`` is the
modern form of X-Frame-Options DENY. A view that already set the header (a stricter or a
documented looser policy) keeps its own. The API docs page (ReDoc, a third-party bundle served
from /static) injects its styles and starts a blob: web worker at run time, so /api/docs/ alone
gets ``style-src 'unsafe-inline'`` and ``worker-src blob:``; still no inline script. Non-HTML responses (JSON API, /metrics) carry no policy:
browsers apply CSP to documents only.
"""
from __future__ import annotations

from django.conf import settings

DEFAULT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# Path prefix -> policy, for pages built by third-party code we cannot make inline-free.
RELAXED = {
    "/api/docs/": DEFAULT_POLICY.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
    + "; worker-src 'self' blob:",
}


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
            policy = next((p for prefix, p in RELAXED.items() if request.path.startswith(prefix)), self.policy)
            stream_origin = getattr(settings, "STREAM_CONNECT_ORIGIN", "")
            if stream_origin:  # the console's EventSource reaches the stream process there (apps.stream)
                policy = policy.replace("connect-src 'self'", f"connect-src 'self' {stream_origin}", 1)
            response[self.header] = policy
        return response
