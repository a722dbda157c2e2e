"""ID token and userinfo claims (OpenID Connect Core §5.1), mapped from the user model, and the
sign-in they carry: `auth_time`, `amr` (RFC 8176), `acr` (docs/decisions/0014-oauth-authorize-and-consent.md).

A validator mixin: oauth_provider.validators.OAuth2Validator is built from it.

The authorization code is created while the browser session is at hand; the token request that
redeems it has no session. So the sign-in travels with the code (inside the toolkit's
`Grant.claims` JSON, under a key of ours that no OIDC claims request uses) and, for ID tokens
issued again on refresh (OIDC Core §12.2), with the ID token it came from (IDTokenAuthentication).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

from accounts.selectors.mfa import amr_of, auth_time_of, authentication_records
from oauth_provider.models import IDTokenAuthentication

if TYPE_CHECKING:
    from oauthlib.common import Request as OAuthlibRequest

# `acr` values (OIDC Core §2): one kind of proof, or two combined (RFC 8176 `mfa`).
ACR_SINGLE_FACTOR = "1"
ACR_MULTI_FACTOR = "2"
# Where the sign-in rides in Grant.claims; OIDC claims requests only use `userinfo` and `id_token`.
GRANT_SIGN_IN_KEY = "urn:oauth-provider:sign-in"
# Claims this server can put in ID tokens or userinfo (discovery's `claims_supported`).
SUPPORTED_CLAIMS = (
    "sub",
    "name",
    "preferred_username",
    "updated_at",
    "email",
    "email_verified",
    "auth_time",
    "amr",
    "acr",
    "nonce",
)


@dataclass(frozen=True)
class SignIn:
    """When and how the user last proved who they are."""

    auth_time: datetime | None
    amr: list[str] = field(default_factory=list)

    @property
    def acr(self) -> str:
        if not self.amr:
            return ""
        return ACR_MULTI_FACTOR if "mfa" in self.amr else ACR_SINGLE_FACTOR

    def as_json(self) -> dict[str, Any]:
        return {
            "auth_time": self.auth_time.timestamp() if self.auth_time else None,
            "amr": self.amr,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SignIn:
        at = value.get("auth_time")
        return cls(
            auth_time=datetime.fromtimestamp(float(at), tz=UTC) if at is not None else None,
            amr=[str(method) for method in value.get("amr") or []],
        )


def sign_in_of(request: HttpRequest) -> SignIn:
    """The sign-in of the browser session, from allauth's authentication records."""
    records = authentication_records(request.session, user_id=request.user.pk)
    return SignIn(auth_time=auth_time_of(records), amr=amr_of(records))


class ClaimsValidatorMixin:
    """Standard claims per scope, and `acr` / `amr` / `auth_time` from the sign-in."""

    # --- claims ------------------------------------------------------------------------------

    def get_oidc_claims(self, token: Any, token_handler: Any, request: OAuthlibRequest) -> dict[str, Any]:
        """Claims by scope (OIDC Core §5.4); a deactivated user's only claim is `sub`."""
        user = request.user
        claims: dict[str, Any] = {"sub": str(user.pk)}
        if not user.is_active:
            return claims
        scopes = set(request.scopes or [])
        if "profile" in scopes:
            claims["name"] = user.display_name or user.username
            claims["preferred_username"] = user.username
            claims["updated_at"] = int(user.updated_at.timestamp())
        if "email" in scopes:
            claims["email"] = user.email
            claims["email_verified"] = user.email_verified  # the primary allauth address
        return claims

    def get_discovery_claims(self, request: Any) -> list[str]:
        return list(SUPPORTED_CLAIMS)

    def get_id_token_dictionary(
        self, token: Any, token_handler: Any, request: OAuthlibRequest
    ) -> tuple[dict[str, Any], datetime]:
        claims, expiration_time = super().get_id_token_dictionary(  # type: ignore[misc]
            token, token_handler, request
        )
        sign_in = self._sign_in_for_id_token(request)
        request.oauth_provider_sign_in = sign_in
        if sign_in is not None and sign_in.auth_time is not None:
            claims["auth_time"] = int(sign_in.auth_time.timestamp())
            if sign_in.amr:
                claims["amr"] = sign_in.amr
                claims["acr"] = sign_in.acr
        return claims, expiration_time

    def _sign_in_for_id_token(self, request: OAuthlibRequest) -> SignIn | None:
        """The code's sign-in, or on refresh the sign-in of the ID token being refreshed."""
        sign_in: SignIn | None = getattr(request, "oauth_provider_grant_sign_in", None)
        if sign_in is not None:
            return sign_in
        refresh_token = getattr(request, "refresh_token_instance", None)
        access_token = getattr(refresh_token, "access_token", None)
        id_token_id = getattr(access_token, "id_token_id", None)
        if id_token_id is None:
            return None
        stored = IDTokenAuthentication.objects.filter(id_token_id=id_token_id).first()
        if stored is None:
            return None
        return SignIn(auth_time=stored.auth_time, amr=list(stored.amr))

    def _save_id_token(
        self, jti: Any, request: OAuthlibRequest, expires: Any, *args: Any, **kwargs: Any
    ) -> Any:
        id_token = super()._save_id_token(jti, request, expires, *args, **kwargs)  # type: ignore[misc]
        sign_in: SignIn | None = getattr(request, "oauth_provider_sign_in", None)
        if sign_in is not None and sign_in.auth_time is not None:
            IDTokenAuthentication.objects.create(
                id_token=id_token, auth_time=sign_in.auth_time, amr=sign_in.amr, acr=sign_in.acr
            )
        return id_token

    # --- the sign-in travels with the authorization code ---------------------------------------

    def save_authorization_code(
        self, client_id: str, code: dict[str, Any], request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        sign_in: SignIn | None = getattr(request, "oauth_provider_sign_in", None)
        requested_claims = request.claims
        if (
            sign_in is not None
            and "openid" in (request.scopes or [])
            and not isinstance(requested_claims, str)
        ):
            request.claims = {**(requested_claims or {}), GRANT_SIGN_IN_KEY: sign_in.as_json()}
        try:
            super().save_authorization_code(client_id, code, request, *args, **kwargs)  # type: ignore[misc]
        finally:
            request.claims = requested_claims

    def validate_code(
        self, client_id: str, code: str, client: Any, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> bool:
        valid: bool = super().validate_code(client_id, code, client, request, *args, **kwargs)  # type: ignore[misc]
        claims = getattr(request, "claims", None)
        if valid and isinstance(claims, dict) and GRANT_SIGN_IN_KEY in claims:
            stored = claims.pop(GRANT_SIGN_IN_KEY)
            if isinstance(stored, dict):
                request.oauth_provider_grant_sign_in = SignIn.from_json(stored)
        return valid

    # --- prompt=none (OIDC Core §3.1.2.6) --------------------------------------------------------

    def validate_silent_login(self, request: OAuthlibRequest) -> bool:
        # The oauthlib request carries no browser session: oauth_provider.views.authorize decides
        # `login_required` before it gets here.
        return True

    def validate_silent_authorization(self, request: OAuthlibRequest) -> bool:
        # Likewise for `consent_required`: the view checks the remembered consent.
        return True
