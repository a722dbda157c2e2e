"""Exceptions the accounts services raise; the API error handler gives them the common shape."""

from __future__ import annotations

from django.http import Http404
from rest_framework.exceptions import AuthenticationFailed


class RefreshTokenRejected(AuthenticationFailed):
    """A refresh token that is malformed, expired, revoked, reused or raced: always a 401."""

    default_code = "token_not_valid"


class DeviceNotFound(Http404):
    """The caller has no signed-in device with that ID (or may not know it exists)."""
