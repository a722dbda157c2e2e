"""The last word on bearer tokens: one that no authenticator accepted is rejected, not ignored."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request


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
        return 'Bearer realm="api"'
