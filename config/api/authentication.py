"""Bearer tokens at the API's edge: the 401 challenge, and a token no authenticator accepted is rejected."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request


def bearer_challenge(request: Request) -> str:
    """RFC 6750 §3's challenge, pointing at our protected-resource metadata (RFC 9728 §5.1), with
    `error="invalid_token"` when the request presented a token (§3.1)."""
    from oauth_provider.views.metadata import bearer_challenge as challenge  # loads the toolkit's views

    return challenge(request._request)


class ResourceMetadataChallenge(authentication.BaseAuthentication):
    """Authenticates no one: first in the list, it gives every API 401 its `WWW-Authenticate`.

    DRF takes the header from the first authentication class only; with it, a client that meets a
    401 learns where to get a token (RFC 9728 §5.1), then registers and signs in on its own.
    """

    def authenticate(self, request: Request) -> None:
        return None

    def authenticate_header(self, request: Request) -> str:
        return bearer_challenge(request)


class RejectUnknownBearerToken(authentication.BaseAuthentication):
    """Answer 401 `token_not_valid` for a bearer token neither the JWT nor the OAuth check accepted.

    Without it the caller would hear "credentials were not provided", which is false and hides
    an expired or revoked token.
    """

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
        if scheme.lower() == "bearer":  # RFC 9110 §11.1: any case
            raise exceptions.AuthenticationFailed(
                "The access token is invalid, expired or revoked.", code="token_not_valid"
            )
        return None

    def authenticate_header(self, request: Request) -> str:
        return bearer_challenge(request)
