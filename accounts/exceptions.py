"""Exceptions the accounts services raise; the API error handler gives them the common shape."""

from __future__ import annotations

from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, AuthenticationFailed, PermissionDenied


class RefreshTokenRejected(AuthenticationFailed):
    """A refresh token that is malformed, expired, revoked, reused or raced: always a 401."""

    default_code = "token_not_valid"


class DeviceNotFound(Http404):
    """The caller has no signed-in device with that ID (or may not know it exists)."""


class MFAEnrollmentRequired(PermissionDenied):
    """The caller's role requires a second factor and they have none yet (403)."""

    default_detail = (
        "Your account must have a second factor before you can do this: set one up "
        "(an authenticator app or a security key), then try again."
    )
    default_code = "mfa_enrollment_required"


class ReauthenticationRequired(APIException):
    """A sensitive action without a recent re-authentication (401, RFC 9470's step-up challenge)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_code = "reauthentication_required"
    default_detail = (
        "This action needs you to confirm who you are again: re-authenticate "
        "(POST /_allauth/{client}/v1/auth/reauthenticate with your password, or "
        "…/auth/2fa/reauthenticate with a code), then retry within the time allowed."
    )

    def __init__(self, *, max_age: int) -> None:
        super().__init__()
        # RFC 9470 §3: the resource server's step-up challenge.
        self.auth_header = (
            'Bearer error="insufficient_user_authentication", '
            'error_description="A more recent authentication is required", '
            f'max_age="{max_age}"'
        )
