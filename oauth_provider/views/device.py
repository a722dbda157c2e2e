"""The device authorization grant (RFC 8628): the device's endpoint and the user's pages, routed
ahead of the toolkit's at the same paths (docs/decisions/0015-oauth-tokens-and-grants.md).

- `POST /o/device-authorization/`: the device gets a device code and a user code. Only clients
  registered for the device grant may start one (`unauthorized_client` otherwise); the codes
  live `OAUTH_DEVICE_CODE_EXPIRE_SECONDS` (10 minutes by default).
- `/o/device/`: the user, signed in through our own pages (second factor included), types the
  code the device shows. Codes are eight letters from an alphabet without vowels or look-alike
  characters, shown as `WDJB-MJHT` and accepted in any case, with or without the dash or spaces
  (RFC 8628 §6.1); guesses are limited per user.
- `/o/device-confirm/<client_id>/<user_code>`: the user sees the application's name and the
  scopes in plain words, and allows (a remembered consent, like the authorization page's) or
  denies. The device's next poll of `/o/token/` then gets its tokens or `access_denied`.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django_ratelimit.core import get_usage
from oauth2_provider.models import AbstractDeviceGrant, get_device_grant_model
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import DeviceAuthorizationView as ToolkitDeviceAuthorizationView
from oauth2_provider.views import DeviceConfirmView as ToolkitDeviceConfirmView
from oauth2_provider.views import DeviceGrantStatusView as ToolkitDeviceGrantStatusView
from oauth2_provider.views import DeviceUserCodeView as ToolkitDeviceUserCodeView

from accounts.models import User
from audit.services import audit_record
from oauth_provider.models import Application
from oauth_provider.services.consents import consent_grant
from oauth_provider.services.tokens import device_code_lifetime
from oauth_provider.views.tokens import client_authenticated

# RFC 8628 §6.1: 20 consonants (no vowels, so no words; no look-alikes such as 0/O or 1/I/L),
# 8 of them: 20^8 ≈ 2^34.6 codes, guessed at most RATELIMIT_DEVICE_USER_CODE times a minute.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
DEFAULT_USER_CODE_RATE = "10/m"


def user_code_generate() -> str:
    """A new user code, `XXXX-XXXX`."""
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    return f"{letters[:4]}-{letters[4:]}"


def user_code_normalise(typed: str) -> str:
    """The code as stored, from what a person typed: any case, with or without dash or spaces."""
    letters = "".join(character for character in typed.upper() if character.isalnum())
    if len(letters) != USER_CODE_LENGTH:
        return letters
    return f"{letters[:4]}-{letters[4:]}"


def scope_descriptions(scope: str) -> list[tuple[str, str]]:
    known = get_scopes_backend().get_all_scopes()
    return [(name, known.get(name, name)) for name in scope.split()]


# --- the device --------------------------------------------------------------------------------------


class DeviceAuthorizationView(ToolkitDeviceAuthorizationView):
    @classmethod
    def get_server(cls) -> Any:
        server = super().get_server()
        server._expires_in = device_code_lifetime()
        server.user_code_generator = user_code_generate
        return server

    @classmethod
    def get_oauthlib_core(cls) -> Any:
        # Our own cache: the toolkit's class may hold a core built with its own server.
        if "_oauthlib_core" not in cls.__dict__ or oauth2_settings.ALWAYS_RELOAD_OAUTHLIB_CORE:
            cls._oauthlib_core = cls.get_oauthlib_backend_class()(cls.get_server())
        return cls._oauthlib_core

    @client_authenticated
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        headers, response, status = self.create_device_authorization_response(request)
        if status != 200:
            return JsonResponse(data=json.loads(response), status=status, headers=headers)
        application = Application.objects.get(client_id=request.POST["client_id"])
        if not application.allows_grant_type(Application.GRANT_DEVICE_CODE):
            return JsonResponse(
                {
                    "error": "unauthorized_client",
                    "error_description": "This client is not registered for the device authorization grant.",
                },
                status=400,
                headers={"Cache-Control": "no-store"},
            )
        get_device_grant_model().objects.create(
            client_id=application.client_id,
            device_code=response["device_code"],
            user_code=response["user_code"],
            scope=response.get("scope", ""),
            interval=oauth2_settings.DEVICE_FLOW_INTERVAL,
            expires=timezone.now() + timedelta(seconds=response["expires_in"]),
        )
        return JsonResponse(data=response, status=200, headers={**headers, "Cache-Control": "no-store"})


# --- the user's pages --------------------------------------------------------------------------------


class DeviceUserCodeForm(forms.Form):
    user_code = forms.CharField(
        label="Code shown on your device",
        max_length=32,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "autocapitalize": "characters",
                "spellcheck": "false",
                "autofocus": True,
            }
        ),
    )

    def clean_user_code(self) -> str:
        user_code = user_code_normalise(self.cleaned_data["user_code"])
        device_grant_model = get_device_grant_model()
        grant = (
            device_grant_model.objects.filter(
                user_code=user_code, status=device_grant_model.AUTHORIZATION_PENDING
            )
            .order_by("-expires")
            .first()
        )
        if grant is None:
            if device_grant_model.objects.filter(user_code=user_code).exists():
                raise ValidationError("This code has already been used.", code="user_code_already_used")
            raise ValidationError(
                "No device is waiting for this code. Check it and try again.", code="incorrect_user_code"
            )
        if grant.is_expired():
            raise ValidationError(
                "This code has expired. Start again on your device.", code="expired_user_code"
            )
        self.cleaned_data["device_grant"] = grant
        return user_code


class DeviceUserCodeView(ToolkitDeviceUserCodeView):
    template_name = "oauth2_provider/device/user_code.html"
    form_class = DeviceUserCodeForm

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        rate = getattr(settings, "RATELIMIT_DEVICE_USER_CODE", DEFAULT_USER_CODE_RATE)
        usage = get_usage(
            request, group="oauth_provider.device_user_code", key="user", rate=rate, increment=True
        )
        if usage is not None and usage["should_limit"]:
            form = self.get_form()
            form.is_bound = False
            context = self.get_context_data(form=form, rate_limited=True)
            return self.render_to_response(context, status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form: forms.Form) -> HttpResponse:
        grant: AbstractDeviceGrant = form.cleaned_data["device_grant"]
        user = self.request.user
        # The first signed-in user to enter the code claims it; nobody else can take it over.
        claimed = (
            get_device_grant_model()
            .objects.filter(pk=grant.pk, status=grant.AUTHORIZATION_PENDING)
            .filter(Q(user__isnull=True) | Q(user=user))
            .update(user=user)
        )
        if not claimed:
            form.add_error(
                "user_code",
                ValidationError("This code has already been used.", code="user_code_already_used"),
            )
            return self.form_invalid(form)
        self.device_grant = grant
        return super(ToolkitDeviceUserCodeView, self).form_valid(form)


class DeviceConfirmView(ToolkitDeviceConfirmView):
    template_name = "oauth2_provider/device/accept_deny.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if self.get_object().is_expired():
            return render(
                request, "oauth2_provider/device/device_grant_status.html", {"object": self.get_object()}
            )
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["scope_descriptions"] = scope_descriptions(self.get_object().scope or "")
        return context

    def form_valid(self, form: forms.Form) -> HttpResponse:
        action = form.cleaned_data["action"]
        if action not in ("accept", "deny"):
            return HttpResponseBadRequest()
        with transaction.atomic():
            grant = get_device_grant_model().objects.select_for_update().get(pk=self.get_object().pk)
            if grant.status != grant.AUTHORIZATION_PENDING or grant.is_expired():
                return render(
                    self.request, "oauth2_provider/device/device_grant_status.html", {"object": grant}
                )
            application = Application.objects.get(client_id=grant.client_id)
            user: User = self.request.user
            if action == "accept":
                grant.status = grant.AUTHORIZED
                grant.save(update_fields=["status"])
                consent_grant(user=user, application=application, scopes=grant.scope.split(), prompted=True)
            else:
                grant.status = grant.DENIED
                grant.save(update_fields=["status"])
                audit_record(
                    action="oauth.device.denied",
                    actor=user,
                    target=application,
                    metadata={"client_id": application.client_id, "scopes": grant.scope.split()},
                )
        return super(ToolkitDeviceConfirmView, self).form_valid(form)


class DeviceGrantStatusView(ToolkitDeviceGrantStatusView):
    template_name = "oauth2_provider/device/device_grant_status.html"
