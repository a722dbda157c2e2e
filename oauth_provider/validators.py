"""The toolkit's OAuth2Validator with the project's rules (docs/decisions/0015-oauth-tokens-and-grants.md).

Claims come from oauth_provider.claims; token rules (deactivated users, authorization-code
reuse, refresh-token reuse, revocation, audit) are written here.

Every method the token endpoint calls runs inside the transaction that
`oauth_provider.views.tokens.TokenView` opens around the request, so the row locks taken here
(the authorization code, the refresh token, the device code) hold until the tokens are saved,
and the audit events commit with them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.contrib.auth.hashers import check_password, identify_hasher, make_password
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from oauth2_provider.models import (
    AbstractApplication,
    AbstractDeviceGrant,
    get_access_token_model,
    get_device_grant_model,
    get_grant_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)
from oauth2_provider.oauth2_validators import OAuth2Validator as ToolkitOAuth2Validator
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749 import errors

from oauth_provider.claims import ClaimsValidatorMixin
from oauth_provider.hashers import ClientSecretHasher
from oauth_provider.models import Application
from oauth_provider.selectors.signing_keys import id_token_verification_key, token_algorithm
from oauth_provider.services import tokens as token_services
from oauth_provider.services.registration import registration_default_scopes

logger = logging.getLogger(__name__)

DEVICE_CODE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
# Scopes about a signed-in person: meaningless on a client-credentials token, which has none.
USER_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
# Permissions a client may hold in `allowed_scopes` that are never put in a token.
CLIENT_PERMISSIONS = frozenset({"introspection"})
# RFC 8628 §3.5: each `slow_down` adds 5 seconds to the interval the device must keep.
SLOW_DOWN_STEP_SECONDS = 5
# Polls may arrive this much early (network jitter) before they count as too fast.
POLL_TOLERANCE = timedelta(seconds=1)


def _locked(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """`SELECT … FOR UPDATE` of the queryset's own rows when a transaction is open to hold it."""
    if connection.in_atomic_block:
        return queryset.select_for_update(of=("self",))
    return queryset


def client_allowed_scopes(client: Any) -> set[str]:
    """The scopes `client` may ask for: its `allowed_scopes`, or when empty the default a client
    registering itself gets (OAUTH_REGISTRATION_SCOPES).

    Empty is read as that default when used, not written into the row: a client made by the
    toolkit's `createapplication` or an admin form left blank can ask for what every OpenID
    Connect library asks for (`openid profile email`), and follows the setting when it changes.
    """
    allowed = set((getattr(client, "allowed_scopes", "") or "").split())
    return allowed or set(registration_default_scopes())


class OAuth2Validator(ClaimsValidatorMixin, ToolkitOAuth2Validator):
    # --- clients ---------------------------------------------------------------------------------

    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        """A client secret against its stored hash, with the fast hasher (oauth_provider.hashers).

        A secret stored under an older (slow) hasher still works, once: on success it is stored
        again under the fast one, so the KDF is paid a single time per client. A client without
        a secret (a public client) never authenticates with one.
        """
        if not provided_secret or not stored_secret:
            return False
        try:
            hasher = identify_hasher(stored_secret)
        except ValueError:  # stored in clear: HS256 clients, whose secret is the signing key
            return constant_time_compare(provided_secret, stored_secret)
        if hasher.algorithm == ClientSecretHasher.algorithm:
            return bool(hasher.verify(provided_secret, stored_secret))
        if not check_password(provided_secret, stored_secret):
            return False
        Application.objects.filter(client_secret=stored_secret).update(
            client_secret=make_password(provided_secret, hasher=ClientSecretHasher.algorithm)
        )
        return True

    def _extract_basic_auth(self, request: OAuthlibRequest) -> str | None:
        """The toolkit's, with the scheme matched in any case (RFC 9110 §11.1: `basic` is `Basic`)."""
        scheme, _, credentials = (request.headers.get("HTTP_AUTHORIZATION") or "").partition(" ")
        if scheme.lower() != "basic" or not credentials:
            return None
        return credentials

    # --- grants and response types offered --------------------------------------------------------

    def validate_grant_type(
        self,
        client_id: str,
        grant_type: str,
        client: Any,
        request: OAuthlibRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        if grant_type == "password":  # RFC 9700 §2.4; oauth_provider.server does not even route it
            return False
        return bool(super().validate_grant_type(client_id, grant_type, client, request, *args, **kwargs))

    def validate_response_type(
        self,
        client_id: str,
        response_type: str,
        client: Any,
        request: OAuthlibRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        # Only the code flow: no implicit or hybrid response hands a token to the front channel
        # (RFC 9700 §2.1.2), whatever the client row says it may use.
        if response_type != "code":
            raise errors.UnsupportedResponseTypeError(request=request)
        return bool(
            super().validate_response_type(client_id, response_type, client, request, *args, **kwargs)
        )

    def is_pkce_required(self, client_id: str, request: OAuthlibRequest) -> bool:
        """PKCE for every public client (RFC 9700 §2.1.1), and for confidential ones that ask for it."""
        client = request.client if isinstance(request.client, Application) else None
        if client is None or client.client_id != client_id:
            client = self._load_application(client_id, request)
        if client is None:
            return True
        return client.client_type == AbstractApplication.CLIENT_PUBLIC or bool(client.require_pkce)

    # --- scopes ----------------------------------------------------------------------------------

    def _grantable_scopes(self, client: Any, request: OAuthlibRequest) -> set[str]:
        known = set(get_scopes_backend().get_available_scopes(application=client, request=request))
        grantable = (known & client_allowed_scopes(client)) - CLIENT_PERMISSIONS
        if getattr(request, "grant_type", None) == "client_credentials":
            grantable -= USER_SCOPES
        return grantable

    def validate_scopes(
        self,
        client_id: str,
        scopes: list[str],
        client: Any,
        request: OAuthlibRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        """Known scopes the client is allowed (`Application.allowed_scopes`); never a permission.

        Scope values the server does not know are dropped from the request (OpenID Connect Core
        §3.1.2.1: "SHOULD be ignored"), so what is granted, consented to and shown in the token's
        `scope` is what remains; a request of unknown values only is one without `scope` (RFC 6749
        §3.3: the default). Called for the authorization request, client credentials and the
        device authorization request.
        """
        known = get_scopes_backend().get_all_scopes()
        requested = [scope for scope in scopes if scope in known]
        if len(requested) != len(scopes):
            request.scopes = requested or list(self.get_default_scopes(client_id, request))
            scopes = request.scopes
        if not super().validate_scopes(client_id, scopes, client, request, *args, **kwargs):
            return False
        return set(scopes) <= self._grantable_scopes(client, request)

    def get_default_scopes(
        self, client_id: str, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> list[str]:
        if getattr(request, "grant_type", None) == "client_credentials":
            # No scope asked: everything the client may have (RFC 6749 §3.3 lets us choose).
            return sorted(self._grantable_scopes(request.client, request))
        return list(super().get_default_scopes(client_id, request, *args, **kwargs))

    # --- authorization codes -----------------------------------------------------------------------

    def validate_code(
        self, client_id: str, code: str, client: Any, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> bool:
        """Lock the code until its tokens are saved: of two concurrent redemptions, one waits, then
        finds the code gone. A code redeemed before revokes what it bought (RFC 6749 §4.1.2)."""
        grant = _locked(get_grant_model().objects.filter(code=code, application=client)).first()
        if grant is None:
            if isinstance(client, Application):
                token_services.authorization_code_reuse_revoke(code=code, application=client)
            return False
        if grant.code_challenge and grant.code_challenge_method != "S256":
            return False  # RFC 9700 §2.1.1: a `plain` challenge is never redeemed
        if not grant.user.is_active:
            return False
        return bool(super().validate_code(client_id, code, client, request, *args, **kwargs))

    # --- refresh tokens ------------------------------------------------------------------------------

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> bool:
        """The toolkit's check, under a row lock, with reuse detection, an absolute lifetime and
        the user's `is_active`.

        Any refresh token presented after it was rotated (or revoked) is reuse: its whole family
        is revoked (RFC 9700 §4.14.2), even when two requests race with the same token; the
        toolkit's grace period is not used (REFRESH_TOKEN_GRACE_PERIOD_SECONDS stays 0).
        """
        rt = (
            _locked(
                get_refresh_token_model()
                .objects.filter(token_checksum=token_services.checksum(refresh_token), application=client)
                .select_related("access_token", "user")
                .order_by(F("revoked").desc(nulls_first=True))
            )
        ).first()
        if rt is None:
            return False
        if rt.revoked is not None:
            if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION:
                token_services.refresh_token_reuse_revoke(refresh_token=rt)
            return False
        if rt.access_token is None:
            return False  # an orphan: its access token was deleted out of band (the toolkit's rule)
        now = timezone.now()
        idle = refresh_token_expire_timedelta()
        if idle and rt.access_token.expires + idle <= now:
            return False
        if token_services.token_family_has_expired(rt.token_family, now=now):
            return False
        if not rt.user.is_active:
            return False
        request.user = rt.user
        request.refresh_token = refresh_token
        request.refresh_token_instance = rt
        return True

    # --- device codes (RFC 8628) -----------------------------------------------------------------------

    def validate_device_code(
        self, client_id: str, code: str, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> str | None:
        """The device code's status for a poll (RFC 8628 §3.5), under a row lock.

        Polling faster than the interval is `slow_down` and adds 5 seconds to it; past its
        expiry a code is `expired_token`; an approved code for a deactivated user is
        `access_denied`. An unknown code, or another client's, is None (`invalid_grant`).
        """
        device_grant_model = get_device_grant_model()
        grant: AbstractDeviceGrant | None = _locked(
            device_grant_model.objects.filter(device_code=code)
        ).first()
        client = request.client
        if grant is None or client is None or grant.client_id != client.client_id:
            return None
        now = timezone.now()
        if grant.status == grant.EXPIRED or now >= grant.expires:
            if grant.status != grant.EXPIRED:
                grant.status = grant.EXPIRED
                grant.save(update_fields=["status"])
            return "expired_token"
        if grant.status == grant.DENIED:
            return "access_denied"
        if grant.status == grant.AUTHORIZED:
            if grant.user is None or not grant.user.is_active:
                return "access_denied"
            request.user = grant.user
            request.scopes = grant.scope.split()
            request.oauth_provider_device_grant = grant
            return "authorized"
        too_fast = grant.last_checked + timedelta(seconds=grant.interval) - POLL_TOLERANCE > now
        if too_fast:
            grant.interval += SLOW_DOWN_STEP_SECONDS
        grant.save(update_fields=["interval", "last_checked"])  # auto_now: this poll's time
        return "slow_down" if too_fast else "authorization_pending"

    # --- access tokens ---------------------------------------------------------------------------------

    def validate_bearer_token(self, token: str, scopes: list[str], request: OAuthlibRequest) -> bool:
        """The toolkit's check, and the token's user must still be active: a deactivated user's
        tokens stop at once (the user row comes with the token, so this costs nothing)."""
        if not super().validate_bearer_token(token, scopes, request):
            return False
        user = request.user
        if user is not None and not user.is_active:
            request.user = None
            request.access_token = None
            request.oauth2_error = OrderedDict(
                [("error", "invalid_token"), ("error_description", "The access token is invalid.")]
            )
            return False
        return True

    def _get_key_for_token(self, token: str) -> Any:
        """The published key an ID token's `kid` names, so a token signed before a rotation (an
        `id_token_hint` at logout) still verifies. Only an HS256 token falls back to its client's
        key (its secret); an RS256 token whose kid is not published verifies with nothing."""
        key = id_token_verification_key(token)
        if key is not None:
            return key
        if token_algorithm(token) != "HS256":
            return None
        return super()._get_key_for_token(token)

    def finalize_id_token(
        self, id_token: dict[str, Any], token: dict[str, Any], token_handler: Any, request: OAuthlibRequest
    ) -> str:
        """Sign the ID token; a client saved without an algorithm signs with RS256, our key.

        The toolkit's `createapplication` leaves `algorithm` empty unless told, and the toolkit then
        fails to sign (a 500 at the token endpoint) as soon as `openid` is granted. Every client our
        services create is RS256; an empty one is read as that default, in memory only.
        """
        client = request.client
        if isinstance(client, Application) and client.algorithm == Application.NO_ALGORITHM:
            client.algorithm = Application.RS256_ALGORITHM
        return str(super().finalize_id_token(id_token, token, token_handler, request))

    def validate_jwt_bearer_token(self, token: str, scopes: list[str], request: OAuthlibRequest) -> bool:
        # An ID token says who signed in to the client; it is not an access token (OIDC Core §2).
        return False

    # --- saving tokens ----------------------------------------------------------------------------------

    def _create_access_token(
        self, expires: Any, request: OAuthlibRequest, token: Any, source_refresh_token: Any = None
    ) -> Any:
        access_token = super()._create_access_token(expires, request, token, source_refresh_token)
        request.oauth_provider_access_token = access_token
        return access_token

    def _create_refresh_token(
        self,
        request: OAuthlibRequest,
        refresh_token_code: str,
        access_token: Any,
        previous_refresh_token: Any,
    ) -> Any:
        refresh_token = super()._create_refresh_token(
            request, refresh_token_code, access_token, previous_refresh_token
        )
        request.oauth_provider_refresh_token = refresh_token
        return refresh_token

    def save_bearer_token(
        self, token: dict[str, Any], request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> Any:
        """Save the tokens, the family they start (with the code they came from), consume a device
        code, and record `oauth.token.issued`, all in one transaction."""
        with transaction.atomic():
            result = super().save_bearer_token(token, request, *args, **kwargs)
            refresh_token = getattr(request, "oauth_provider_refresh_token", None)
            grant_type = request.grant_type
            if refresh_token is not None and refresh_token.token_family and grant_type != "refresh_token":
                token_services.token_family_start(
                    family=refresh_token.token_family,
                    application=request.client,
                    grant_type=grant_type,
                    code=request.code if grant_type == "authorization_code" else None,
                )
            device_grant = getattr(request, "oauth_provider_device_grant", None)
            if device_grant is not None:
                device_grant.delete()  # RFC 8628: a device code buys one set of tokens
            token_services.token_issued_record(
                application=request.client,
                user=request.user,
                grant_type=grant_type,
                scopes=str(token.get("scope", "")).split(),
                refresh_token=refresh_token,
            )
        return result

    # --- revocation (RFC 7009) -----------------------------------------------------------------------------

    def revoke_token(
        self, token: str, token_type_hint: str | None, request: OAuthlibRequest, *args: Any, **kwargs: Any
    ) -> None:
        """Revoke one of the calling client's tokens; another client's or an unknown one is ignored
        (200 either way, RFC 7009 §2.2).

        A refresh token takes its access token with it; an access token alone leaves its refresh
        token working (§2.1 leaves the choice to us: the client asked to end this access token).
        """
        client = request.client
        if not isinstance(client, Application):
            return
        access_token_model = get_access_token_model()
        refresh_token_model = get_refresh_token_model()
        lookup = {"token_checksum": token_services.checksum(token), "application": client}
        order = [refresh_token_model, access_token_model]
        if token_type_hint != token_services.REFRESH_TOKEN_TYPE:
            order.reverse()
        for model in order:
            found = list(_locked(model.objects.filter(**lookup)))
            if not found:
                continue
            for instance in found:
                if isinstance(instance, access_token_model):
                    token_services.access_token_revoke(access_token=instance, actor=client)
                else:
                    token_services.refresh_token_revoke(refresh_token=instance, actor=client)
            return
