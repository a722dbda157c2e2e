"""DRF authentication: first-party JWTs bound to device sessions, and the MFA requirement.

Every way into the API (JWT, OAuth access token, browser session) refuses a user whose role
requires a second factor they have not set up: 403 `mfa_enrollment_required`, except reading
`GET /api/v1/users/me/`, so a client can tell the user why (docs/decisions/0012-mfa-and-step-up.md).

An OAuth access token also needs the scopes its endpoint declares; an endpoint that declares none
refuses OAuth tokens (docs/decisions/0015-oauth-tokens-and-grants.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import authentication, exceptions
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import AUTH_HEADER_TYPE_BYTES, JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.tokens import Token

from accounts.exceptions import MFAEnrollmentRequired
from accounts.models import User
from accounts.selectors.mfa import user_mfa_missing
from accounts.tokens import access_token_user

# What a user who still has to set up a required second factor may call.
MFA_ENROLLMENT_ALLOWED = {("GET", "/api/v1/users/me/"), ("HEAD", "/api/v1/users/me/")}


def refuse_missing_required_mfa(request: Request, user: Any) -> None:
    if (
        isinstance(user, User)
        and (request.method, request.path_info) not in MFA_ENROLLMENT_ALLOWED  # path_info: SCRIPT_NAME-proof
        and user_mfa_missing(user)
    ):
        # DRF's own exception, not the service refusal: only for DRF's own does Request._authenticate
        # leave the request anonymous, rather than authenticating again at the next request.user.
        raise exceptions.PermissionDenied(
            MFAEnrollmentRequired.default_detail, code=MFAEnrollmentRequired.default_code
        )


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
        result = super().authenticate(request)
        if result is not None:
            refuse_missing_required_mfa(request, result[0])
        return result

    def get_raw_token(self, header: bytes) -> bytes | None:
        """simplejwt's, with the scheme read in any case (RFC 9110 §11.1: `bearer` is `Bearer`)."""
        scheme, separator, rest = header.lstrip().partition(b" ")
        for accepted in AUTH_HEADER_TYPE_BYTES:
            if scheme.lower() == accepted.lower():
                header = accepted + separator + rest
                break
        return super().get_raw_token(header)

    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]
        user = access_token_user(token=validated_token)  # type: ignore[arg-type]
        if user is None:
            raise InvalidToken("The access token has been revoked.")
        return user


class InsufficientScope(exceptions.PermissionDenied):
    """An OAuth access token without the scopes the endpoint needs (403, RFC 6750 §3.1)."""

    default_code = "insufficient_scope"

    def __init__(self, required: list[str] | None) -> None:
        if required:
            detail = f"This access token lacks the scopes this endpoint needs: {' '.join(required)}."
            self.auth_header = f'Bearer error="insufficient_scope", scope="{" ".join(required)}"'
        else:
            detail = "This endpoint does not accept OAuth access tokens."
            self.auth_header = 'Bearer error="insufficient_scope"'
        super().__init__(detail)


def oauth_scopes_required(request: Request) -> list[str] | None:
    """The scopes the view declares for this action: `required_scopes = {"<action>": [...]}`.

    The key is the viewset action (`list`, `retrieve`, `me`, ...), or the lowercase HTTP method
    for a plain APIView. None when the view declares nothing for it.
    """
    view = (request.parser_context or {}).get("view")
    declared = getattr(view, "required_scopes", None)
    if not isinstance(declared, Mapping):
        return None
    action = getattr(view, "action", None) or (request.method or "").lower()
    scopes = declared.get(action)
    return list(scopes) if scopes else None


def refuse_missing_oauth_scopes(request: Request, access_token: Any) -> None:
    """Safe by default: an action that declares no scopes refuses every OAuth access token, and
    so does every action for a token without a user (client credentials: this API acts for users)."""
    required = oauth_scopes_required(request)
    if required is None or access_token.user_id is None:
        raise InsufficientScope(None)
    if not access_token.allow_scopes(required):  # the toolkit's check (TokenHasScope's)
        raise InsufficientScope(required)


class MFARequiredOAuth2Authentication(OAuth2Authentication):
    """The toolkit's bearer check, with the MFA requirement and the endpoint's scopes."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is not None:
            refuse_missing_required_mfa(request, result[0])
            refuse_missing_oauth_scopes(request, result[1])
        return result


class MFARequiredSessionAuthentication(authentication.SessionAuthentication):
    """DRF's session check (with CSRF), with the MFA requirement."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is not None:
            refuse_missing_required_mfa(request, result[0])
        return result
