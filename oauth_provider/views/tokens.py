"""The token, revocation and introspection endpoints, routed ahead of the toolkit's at the same
paths (docs/decisions/0015-oauth-tokens-and-grants.md).

- `/o/token/` is the toolkit's view, run in one transaction: the validator's row locks (the code,
  the refresh token, the device code) then hold until the tokens are saved, so two requests
  racing with one code or refresh token give one set of tokens, and the audit event commits
  with them. The device grant's polling answers come from the validator (RFC 8628 §3.5),
  `slow_down` and `expired_token` included, instead of the toolkit's shortcut before it.
- `/o/revoke_token/` is the toolkit's view (RFC 7009) in one transaction.
- `/o/userinfo/` is the toolkit's view, refusing an access token in the query string (RFC 9700
  §4.3.2): oauthlib's bearer check there reads one, and the toolkit's gate only guards its
  protected-resource views. Its 401 challenge is the API's (oauth_provider.views.metadata).
- `/o/introspect/` (RFC 7662) answers confidential clients authenticating with their own
  credentials (HTTP Basic, or in the body); bearer tokens are not accepted there.

On the three endpoints that authenticate clients (and on the device authorization endpoint), a
failed client authentication is challenged with `Basic` (RFC 6749 §5.2), and a body `client_id`
that names another client than the Basic credentials is `invalid_request` (oauthlib would answer
`server_error`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import View
from oauth2_provider.compat import login_not_required
from oauth2_provider.views import RevokeTokenView as ToolkitRevokeTokenView
from oauth2_provider.views import TokenView as ToolkitTokenView
from oauth2_provider.views import UserInfoView as ToolkitUserInfoView
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OAuthlibRequest

from oauth_provider.client_authentication import CLIENT_AUTHENTICATION_CHALLENGE, client_ids_disagree
from oauth_provider.models import Application
from oauth_provider.services.tokens import token_introspection
from oauth_provider.validators import DEVICE_CODE_GRANT_TYPE
from oauth_provider.views.metadata import bearer_challenge, presents_bearer_token

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(
    error: str, description: str, *, status: int, headers: dict[str, str] | None = None
) -> JsonResponse:
    """An RFC 6749 §5.2 error body (config.middleware adds the project's error keys)."""
    return JsonResponse(
        {"error": error, "error_description": description},
        status=status,
        headers={**NO_STORE, **(headers or {})},
    )


ViewMethod = Callable[..., HttpResponse]


def client_authenticated(post: ViewMethod) -> ViewMethod:
    """The POST of an endpoint that authenticates the client (RFC 6749 §2.3): one client named, and
    a failed authentication challenged with the scheme clients authenticate with."""

    @functools.wraps(post)
    def checked(view: View, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if client_ids_disagree(request):
            # RFC 6749 §5.2 invalid_request: the request names two clients, so it is malformed.
            return oauth_error(
                "invalid_request",
                "The client_id in the body is not the client the Authorization header authenticates.",
                status=400,
            )
        response = post(view, request, *args, **kwargs)
        if response.status_code == 401:  # only a client authentication fails with a 401 here
            response["WWW-Authenticate"] = CLIENT_AUTHENTICATION_CHALLENGE
        return response

    return checked


class TokenView(ToolkitTokenView):
    @method_decorator(
        sensitive_post_parameters("client_secret", "code_verifier", "refresh_token", "device_code")
    )
    @client_authenticated
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.POST.get("grant_type"):
            # RFC 6749 §5.2; oauthlib would route the request to its default grant and answer
            # unsupported_grant_type.
            return oauth_error("invalid_request", "The grant_type parameter is missing.", status=400)
        with transaction.atomic():
            if request.POST.get("grant_type") == DEVICE_CODE_GRANT_TYPE:
                return self.device_flow_token_response(request, request.POST.get("device_code", ""))
            return self.authorization_flow_token_response(request)

    def device_flow_token_response(
        self, request: HttpRequest, device_code: str, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        _url, headers, body, status = self.create_token_response(request)
        response = HttpResponse(content=body, status=status)
        for name, value in headers.items():
            response[name] = value
        return response


class RevokeTokenView(ToolkitRevokeTokenView):
    @method_decorator(sensitive_post_parameters("client_secret", "token"))
    @client_authenticated
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with transaction.atomic():
            return super().post(request, *args, **kwargs)


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class IntrospectTokenView(OAuthLibMixin, View):
    """RFC 7662 for resource servers and for clients asking about their own tokens."""

    http_method_names = ["post", "options"]

    @method_decorator(sensitive_post_parameters("client_secret", "token"))
    @client_authenticated
    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        client = self.authenticated_client(request)
        if client is None:
            # RFC 7662 §2.3 / RFC 6749 §5.2: a client that failed to authenticate.
            return oauth_error(
                "invalid_client",
                "Authenticate with the client's own credentials (HTTP Basic or client_secret_post).",
                status=401,
            )
        token = request.POST.get("token", "")
        if not token:
            return oauth_error("invalid_request", "The token parameter is missing.", status=400)
        data = token_introspection(
            token=token, token_type_hint=request.POST.get("token_type_hint"), client=client
        )
        return JsonResponse(data, headers=NO_STORE)

    def authenticated_client(self, request: HttpRequest) -> Application | None:
        """The confidential client the request authenticates as, with its secret; else None."""
        core = self.get_oauthlib_core()
        uri, http_method, body, headers = core._extract_params(request)
        oauthlib_request = OAuthlibRequest(uri, http_method, body, headers)
        validator = core.server.request_validator
        if not validator.authenticate_client(oauthlib_request):
            return None
        client = oauthlib_request.client
        if not isinstance(client, Application) or client.client_type != Application.CLIENT_CONFIDENTIAL:
            return None
        return client


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class UserInfoView(ToolkitUserInfoView):
    """OpenID Connect userinfo, with the access token in the Authorization header only."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "access_token" in request.GET:
            return oauth_error(
                "invalid_request",
                "Send the access token in the Authorization header, never in the URL.",
                status=400,
                headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
            )
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        if response.status_code == 401:
            # oauthlib's answer is a bare `invalid_token`, sent as text/html; the API's challenge
            # also says where to learn how to get a token (RFC 9728 §5.1), and only names the
            # error when a token was presented (RFC 6750 §3.1).
            description = (
                "The access token is invalid, expired or revoked."
                if presents_bearer_token(request)
                else "An access token is required, in the Authorization header."
            )
            return oauth_error(
                "invalid_token",
                description,
                status=401,
                headers={"WWW-Authenticate": bearer_challenge(request)},
            )
        if response.status_code >= 400 and response.content.startswith(b"{"):
            response["Content-Type"] = "application/json"  # oauthlib's JSON, sent as text/html
        return response
