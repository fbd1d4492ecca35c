"""Sign-in and sign-out (Django's auth views), throttled and audited."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from apps.audit.services import record

from .. import ratelimit
from ..forms import ThrottledAuthenticationForm

# An on-call shift plus slack; closing the browser does not end it (operators keep tabs open).
SESSION_SECONDS = 12 * 3600


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)  # logs in and rotates the session key
        self.request.session.set_expiry(SESSION_SECONDS)
        user = form.get_user()
        ip = ratelimit.client_ip(self.request)
        ratelimit.reset(user.get_username(), ip)
        record("console.login", actor=user, target=user, data={}, ip=ip or None)
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django 5): a link cannot sign anyone out."""

    next_page = "console:login"

    def post(self, request, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated:
            record("console.logout", actor=request.user, target=request.user,
                   ip=ratelimit.client_ip(request) or None)
        return super().post(request, *args, **kwargs)
