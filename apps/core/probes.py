"""``GET /-/live``: a liveness probe answered before host validation, HTTPS redirect and sessions.

Docker's HEALTHCHECK (and a load balancer) calls it on 127.0.0.1 over plain HTTP, which in
production is neither an allowed host nor HTTPS; it must also not depend on the database,
broker or workers, or a worker outage would make the orchestrator restart healthy web
containers. Readiness with those dependencies is /api/v1/health.
"""
from __future__ import annotations

from django.http import HttpResponse

LIVE_PATH = "/-/live"


class LivenessProbeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path == LIVE_PATH and request.method in ("GET", "HEAD"):
            return HttpResponse("ok\n", content_type="text/plain")
        return self.get_response(request)
