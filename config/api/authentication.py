"""Bearer tokens at the API's edge: the 401 challenge, and a token no authenticator accepted is rejected."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request


def bearer_challenge() -> str:
    """RFC 6750 §3's challenge, pointing at our protected-resource metadata (RFC 9728 §5.1)."""
    from oauth_provider.views_metadata import protected_resource_metadata_url  # loads the toolkit's views

    return f'Bearer realm="api", resource_metadata="{protected_resource_metadata_url()}"'


class ResourceMetadataChallenge(authentication.BaseAuthentication):
    """Authenticates no one: first in the list, it gives every API 401 its `WWW-Authenticate`.

    DRF takes the header from the first authentication class only; with it, a client that meets a
    401 learns where to get a token (RFC 9728 §5.1), then registers and signs in on its own.
    """

    def authenticate(self, request: Request) -> None:
        return None

    def authenticate_header(self, request: Request) -> str:
        return bearer_challenge()


class RejectUnknownBearerToken(authentication.BaseAuthentication):
    """Answer 401 `token_not_valid` for a bearer token neither the JWT nor the OAuth check accepted.

    Without it the caller would hear "credentials were not provided", which is false and hides
    an expired or revoked token.
    """

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        scheme = request.headers.get("Authorization", "").partition(" ")[0]
        if scheme.lower() == "bearer":
            raise exceptions.AuthenticationFailed(
                "The access token is invalid, expired or revoked.", code="token_not_valid"
            )
        return None

    def authenticate_header(self, request: Request) -> str:
        return bearer_challenge()
