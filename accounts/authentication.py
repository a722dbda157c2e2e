"""DRF authentication for first-party JWTs bound to device sessions."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from accounts.models import User
from accounts.tokens import access_token_user


class DeviceSessionJWTAuthentication(JWTAuthentication):
    """Accept a JWT access token only while its device session is live and its user active.

    Bearer values that are not JWTs are left to the next authentication class (the OAuth server's
    opaque access tokens).
    """

    def authenticate(self, request: Request) -> tuple[Any, Token] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None or raw_token.count(b".") != 2:
            return None
        return super().authenticate(request)

    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]
        user = access_token_user(token=validated_token)  # type: ignore[arg-type]
        if user is None:
            raise InvalidToken("The access token has been revoked.")
        return user
