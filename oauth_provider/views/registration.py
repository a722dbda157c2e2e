"""Dynamic client registration endpoints: `/o/register/` (RFC 7591) and `/o/register/<client_id>/` (RFC 7592).

They take the toolkit's views' place at the toolkit's paths (config/urls.py routes them first) and
keep their `DCR_ENABLED` switch and CSRF handling; the work is done by
oauth_provider/services/registration.py. Who may register: the holder of an initial access token
(`Authorization: Bearer iat_…`), or a signed-in staff member allowed `oauth_provider.register_client`
(a session request must pass Django's CSRF check). A registered client manages its registration
with its registration access token (`Authorization: Bearer rat_…`).

Errors are RFC 7591 §3.2.2's body, `error` and `error_description`, with the per-field `errors`
(`attr`, `code`, `detail`) of the API's error shape added, and never cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from oauth2_provider.dcr import enforce_csrf
from oauth2_provider.utils import parse_bearer_token
from oauth2_provider.views import DynamicClientRegistrationManagementView, DynamicClientRegistrationView

from accounts.models import User
from accounts.policies import policy_allows
from oauth_provider.models import ClientRegistration, InitialAccessToken
from oauth_provider.models.registration import InitialAccessTokenState
from oauth_provider.services.registration import (
    URI_LIST_FIELDS,
    InitialAccessTokenUnusable,
    RegisteredClient,
    client_metadata_of,
    client_register,
    client_registration_delete,
    client_registration_get,
    client_registration_update,
    initial_access_token_get,
)

REGISTER_PERMISSION = "oauth_provider.register_client"
MAX_METADATA_BYTES = 64 * 1024
UNUSABLE_TOKEN_DESCRIPTIONS = {
    InitialAccessTokenState.EXPIRED: "The initial access token has expired.",
    InitialAccessTokenState.REVOKED: "The initial access token has been revoked.",
    InitialAccessTokenState.USED_UP: "The initial access token has registered as many clients as it may.",
}


def _json(body: dict[str, Any], *, status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    # Registration responses carry credentials (RFC 7591 §3.2.1 in the spirit of RFC 6749 §5.1).
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def error_response(error: str, description: str, *, status: int = 400, **extra: Any) -> JsonResponse:
    response = _json({"error": error, "error_description": description, **extra}, status=status)
    if status == 401:
        # RFC 6750 §3: no error code in the challenge when no credentials were sent.
        response["WWW-Authenticate"] = f'Bearer error="{error}"' if error == "invalid_token" else "Bearer"
    return response


def metadata_error_response(error: ValidationError) -> JsonResponse:
    """RFC 7591 §3.2.2: `invalid_redirect_uri` when a URI is at fault, else `invalid_client_metadata`."""
    fields = error.error_dict if hasattr(error, "error_dict") else {"__all__": error.error_list}
    errors: list[dict[str, Any]] = [
        {
            "attr": None if attr == "__all__" else attr,
            "code": item.code or "invalid",
            "detail": str(next(iter(item))),
        }
        for attr, items in fields.items()
        for item in items
    ]
    code = (
        "invalid_redirect_uri"
        if any(attr in URI_LIST_FIELDS for attr in fields)
        else "invalid_client_metadata"
    )
    description = "; ".join(
        f"{item['attr']}: {item['detail']}" if item["attr"] else item["detail"] for item in errors
    )
    return error_response(code, description, type="validation_error", errors=errors)


def _metadata_of(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        body = b"x" * (MAX_METADATA_BYTES + 1)
    if len(body) > MAX_METADATA_BYTES:
        return error_response(
            "invalid_client_metadata", f"The metadata must be under {MAX_METADATA_BYTES} bytes."
        )
    try:
        data = json.loads(body)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return error_response("invalid_client_metadata", "The request body must be a JSON object.")
    if not isinstance(data, dict):
        return error_response("invalid_client_metadata", "The request body must be a JSON object.")
    return data


def _registration_client_uri(client_id: str) -> str:
    path = reverse("oauth2_provider:dcr-register-management", kwargs={"client_id": client_id})
    return f"{settings.SITE_URL}{path}"


def _client_response(
    registered: RegisteredClient, *, registration_access_token: str, status: int
) -> JsonResponse:
    body = client_metadata_of(registered.registration)
    if registered.client_secret:
        body["client_secret"] = registered.client_secret
    body["registration_access_token"] = registration_access_token
    body["registration_client_uri"] = _registration_client_uri(registered.application.client_id)
    return _json(body, status=status)


# --- who registers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationCaller:
    initial_access_token: InitialAccessToken | None = None
    staff: User | None = None


def registration_caller(request: HttpRequest) -> RegistrationCaller | JsonResponse:
    """The initial access token or staff member behind a registration, or the refusal to send."""
    bearer = parse_bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
    if bearer is not None:
        token = initial_access_token_get(bearer)
        if token is None:
            return error_response("invalid_token", "Unknown initial access token.", status=401)
        if token.state != InitialAccessTokenState.ACTIVE:
            return error_response("invalid_token", UNUSABLE_TOKEN_DESCRIPTIONS[token.state], status=401)
        return RegistrationCaller(initial_access_token=token)
    user = request.user
    if not user.is_authenticated:
        return error_response(
            "access_denied",
            "Registration needs an initial access token (Bearer) or a staff session.",
            status=401,
        )
    # A session is a cookie: the browser would send it with a cross-site request too.
    if not enforce_csrf(request):
        return error_response("access_denied", "CSRF verification failed.", status=403)
    if not policy_allows(user, REGISTER_PERMISSION):
        return error_response("access_denied", "You may not register OAuth clients.", status=403)
    return RegistrationCaller(staff=user)


class InitialAccessTokenOrStaffPermission:
    """The toolkit's DCR permission protocol (`DCR_REGISTRATION_PERMISSION_CLASSES`) for our rule."""

    def has_permission(self, request: HttpRequest) -> bool:
        return isinstance(registration_caller(request), RegistrationCaller)


class _JsonMethodNotAllowed:
    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = error_response("invalid_request", f"{request.method} is not allowed here.", status=405)
        response["Allow"] = ", ".join(method.upper() for method in self._allowed_methods())  # type: ignore[attr-defined]
        return response


# --- the endpoints ---------------------------------------------------------------------------------


class ClientRegistrationView(_JsonMethodNotAllowed, DynamicClientRegistrationView):
    """`POST /o/register/`: register a client (RFC 7591 §3.1)."""

    http_method_names = ["post", "options"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        caller = registration_caller(request)
        if isinstance(caller, JsonResponse):
            return caller
        data = _metadata_of(request)
        if isinstance(data, JsonResponse):
            return data
        try:
            registered = client_register(
                metadata=data, initial_access_token=caller.initial_access_token, staff=caller.staff
            )
        except InitialAccessTokenUnusable as refusal:  # used up by a concurrent registration
            return error_response("invalid_token", UNUSABLE_TOKEN_DESCRIPTIONS[refusal.state], status=401)
        except ValidationError as error:
            return metadata_error_response(error)
        return _client_response(
            registered, registration_access_token=registered.registration_access_token, status=201
        )


class ClientConfigurationView(_JsonMethodNotAllowed, DynamicClientRegistrationManagementView):
    """`GET`, `PUT`, `DELETE /o/register/<client_id>/`: the client configuration endpoint (RFC 7592)."""

    http_method_names = ["get", "put", "delete", "options"]

    def _authenticated(
        self, request: HttpRequest, client_id: str
    ) -> tuple[ClientRegistration, str] | JsonResponse:
        presented = parse_bearer_token(request.META.get("HTTP_AUTHORIZATION", ""))
        if presented is None:
            return error_response("invalid_token", "A registration access token is required.", status=401)
        registration = client_registration_get(client_id=client_id, registration_access_token=presented)
        if registration is None:
            # RFC 7592 §2.1: 401 whether the client exists or not.
            return error_response("invalid_token", "Invalid registration access token.", status=401)
        return registration, presented

    def get(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        authenticated = self._authenticated(request, client_id)
        if isinstance(authenticated, JsonResponse):
            return authenticated
        registration, presented = authenticated
        registered = RegisteredClient(
            application=registration.application,
            registration=registration,
            registration_access_token=presented,
        )
        return _client_response(registered, registration_access_token=presented, status=200)

    def put(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        authenticated = self._authenticated(request, client_id)
        if isinstance(authenticated, JsonResponse):
            return authenticated
        registration, presented = authenticated
        data = _metadata_of(request)
        if isinstance(data, JsonResponse):
            return data
        try:
            registered = client_registration_update(registration=registration, metadata=data)
        except ValidationError as error:
            return metadata_error_response(error)
        return _client_response(
            registered,
            registration_access_token=registered.registration_access_token or presented,
            status=200,
        )

    def delete(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        authenticated = self._authenticated(request, client_id)
        if isinstance(authenticated, JsonResponse):
            return authenticated
        client_registration_delete(registration=authenticated[0])
        response = HttpResponse(status=204)
        response["Cache-Control"] = "no-store"
        return response
