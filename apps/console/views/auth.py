"""Sign-in and sign-out (Django's auth views), throttled (``apps.console.ratelimit``) and audited."""
from __future__ import annotations

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponse

from apps.audit.services import record
from apps.core.client_ip import client_ip

from .. import ratelimit

# An on-call shift plus slack; closing the browser does not end it (operators keep tabs open).
SESSION_SECONDS = 12 * 3600


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form; a (username, address) pair that keeps failing must wait before its
    password is checked again. ``retry_after`` is set when it has to wait."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed sign-ins for this username from your address. Try again in "
                     "%(seconds)s s, or ask an administrator to reset your password.",
    }
    retry_after = 0

    def _throttled(self, seconds: int) -> forms.ValidationError:
        self.retry_after = seconds
        return forms.ValidationError(self.error_messages["throttled"], code="throttled", params={"seconds": seconds})

    def clean(self):
        username = (self.data.get("username") or "").strip()
        wait = ratelimit.wait_seconds(username, client_ip(self.request))
        if wait:  # refused before the password is hashed: waiting costs the server nothing
            raise self._throttled(wait)
        try:
            return super().clean()
        except forms.ValidationError as exc:
            wait = ratelimit.register_failure(self.request, username)
            if wait:
                raise forms.ValidationError([exc, self._throttled(wait)]) from None
            raise


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)  # logs in and rotates the session key
        self.request.session.set_expiry(SESSION_SECONDS)
        user = form.get_user()
        ip = client_ip(self.request)
        ratelimit.reset(user.get_username(), ip)
        record("console.login", actor=user, target=user, data={}, ip=ip or None)
        return response

    def form_invalid(self, form) -> HttpResponse:
        response = super().form_invalid(form)
        if form.retry_after:
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django 5): a link cannot sign anyone out."""

    next_page = "console:login"

    def post(self, request, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated:
            record("console.logout", actor=request.user, target=request.user, ip=client_ip(request) or None)
        return super().post(request, *args, **kwargs)
