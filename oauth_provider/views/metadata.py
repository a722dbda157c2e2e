"""Discovery, the JWKS and protected-resource metadata (docs/decisions/0013-oauth-keys-and-discovery.md).

- `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4) and
  `/.well-known/oauth-authorization-server` (RFC 8414 §3) serve one document: the toolkit's two
  documents merged, so neither leaves out what the other says, with what the toolkit omits added.
- `/o/.well-known/jwks.json`: every published key (the process's key ring,
  oauth_provider.selectors.signing_keys).
- `/.well-known/oauth-protected-resource` (RFC 9728 §3): our API as a resource server.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from oauth2_provider.views import (
    ConnectDiscoveryInfoView,
    JwksInfoView,
    OAuthProtectedResourceMetadataView,
    OAuthServerMetadataView,
)

from oauth_provider.claims import ACR_MULTI_FACTOR, ACR_SINGLE_FACTOR
from oauth_provider.selectors.signing_keys import jwks_document, jwks_max_age_seconds
from oauth_provider.validators import CLIENT_PERMISSIONS

# Discovery documents change only with a deployment; clients may keep them for an hour.
DISCOVERY_MAX_AGE_SECONDS = 3600
# Scopes of OpenID Connect itself (Core §5.4, §11); every other requestable scope is our API's.
OPENID_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})
# Client authentication that only a client holding credentials can do: introspection is for
# resource servers with their own credentials (RFC 7662 §2.1), never for public clients.
CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# `prompt` values the authorization endpoint honours beyond the toolkit's (views/authorize.py).
EXTRA_PROMPT_VALUES = ("consent", "select_account", "create")


def protected_resource_metadata_url() -> str:
    """Where our API's RFC 9728 metadata is, for `WWW-Authenticate: Bearer resource_metadata=…` (§5.1)."""
    return settings.SITE_URL + reverse("oauth-protected-resource-metadata")


def presents_bearer_token(request: HttpRequest) -> bool:
    """Whether the request sends `Authorization: Bearer …`, the scheme in any case (RFC 9110 §11.1)."""
    return request.headers.get("Authorization", "").strip().partition(" ")[0].lower() == "bearer"


def bearer_challenge(request: HttpRequest) -> str:
    """The 401 challenge of what our access tokens protect (the API, userinfo): RFC 6750 §3's, with
    where to learn how to get a token (RFC 9728 §5.1).

    `error="invalid_token"` only when the request presented a token (§3.1): one without any learns
    that a token is needed, and nothing more.
    """
    params = ['realm="api"']
    if presents_bearer_token(request):
        params.append('error="invalid_token"')
    params.append(f'resource_metadata="{protected_resource_metadata_url()}"')
    return "Bearer " + ", ".join(params)


def _cacheable(response: JsonResponse, max_age: int, *, stale_if_error: bool = False) -> JsonResponse:
    response["Access-Control-Allow-Origin"] = "*"  # public documents, read by browser-based clients too
    response["Cache-Control"] = f"public, max-age={max_age}" + (
        f", stale-if-error={max_age}" if stale_if_error else ""
    )
    return response


class OpenIDConfigurationView(ConnectDiscoveryInfoView):
    """The authorization server's metadata: the issuer is `SITE_URL`, every endpoint and capability."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        return _cacheable(JsonResponse(self.document(request)), DISCOVERY_MAX_AGE_SECONDS)

    def document(self, request: HttpRequest) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(super().get(request).content)
        data.update(json.loads(OAuthServerMetadataView.get(self, request).content))
        # Client permissions (`introspection`) are granted to clients, never requested as scopes.
        data["scopes_supported"] = [
            scope for scope in data["scopes_supported"] if scope not in CLIENT_PERMISSIONS
        ]
        data["device_authorization_endpoint"] = self._get_endpoint_url(
            request, "device-authorization", required=True
        )
        data["introspection_endpoint_auth_methods_supported"] = [
            method
            for method in data["token_endpoint_auth_methods_supported"]
            if method in CONFIDENTIAL_AUTH_METHODS
        ]
        # Only the query response mode (no implicit or hybrid flows, no form_post).
        data["response_modes_supported"] = ["query"]
        # OIDC Discovery §3: omitted, these would default to true; request objects are not supported.
        data["request_parameter_supported"] = False
        data["request_uri_parameter_supported"] = False
        # prompt=consent asks again even for a client the user already approved (OIDC Core
        # §3.1.2.1); select_account signs in afresh; create opens sign-up (Prompt Create 1.0).
        data["prompt_values_supported"] = [
            *data["prompt_values_supported"],
            *(value for value in EXTRA_PROMPT_VALUES if value not in data["prompt_values_supported"]),
        ]
        # `acr` of ID tokens: "1" one factor, "2" a second factor was used (oauth_provider.claims).
        data["acr_values_supported"] = [ACR_SINGLE_FACTOR, ACR_MULTI_FACTOR]
        data["service_documentation"] = settings.SITE_URL + "/api/v1/docs/"
        data["claims_supported"] = sorted(set(data["claims_supported"]))
        return data


class AuthorizationServerMetadataView(OpenIDConfigurationView):
    """RFC 8414 metadata: the same document (its fields are a superset of RFC 8414's)."""


class JwksView(JwksInfoView):
    """The public signing keys: next, active and retired ones, each with its `kid`."""

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        # The activation wait is one `max-age`, so no stale-while-revalidate on top of it.
        response = JsonResponse(dict(jwks_document()))
        return _cacheable(response, jwks_max_age_seconds(), stale_if_error=True)


class ProtectedResourceMetadataView(OAuthProtectedResourceMetadataView):
    """Our API as an RFC 9728 protected resource: who issues its tokens, which scopes it takes."""

    def get_scopes_supported(self) -> list[str]:
        return [
            scope
            for scope in super().get_scopes_supported()
            if scope not in OPENID_SCOPES and scope not in CLIENT_PERMISSIONS
        ]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        return _cacheable(super().get(request, *args, **kwargs), DISCOVERY_MAX_AGE_SECONDS)
