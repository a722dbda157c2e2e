"""Dynamic client registration (RFC 7591/7592): initial access tokens, the registration policy, and
registering, reading, updating and deleting a client with its registration access token.

Decisions: docs/decisions/0016-oauth-client-registration-and-admin.md. In short:

- registration needs an initial access token (RFC 7591 §3, issued by an admin, shown once) or a
  signed-in staff member allowed `oauth_provider.register_client`;
- a self-registered client is never trusted (`skip_authorization`), always uses PKCE, gets the
  grants and scopes its initial access token allows (by default authorization code with refresh
  tokens, and OAUTH_REGISTRATION_SCOPES), never implicit or password (RFC 9700 §2.1.2, §2.4);
- redirect URIs follow oauth_provider/redirect_uris.py, through the model's `clean()`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.settings import oauth2_settings

from accounts.models import User
from audit.services import audit_record
from oauth_provider.models import Application, ClientRegistration, InitialAccessToken
from oauth_provider.models.registration import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
    REGISTRABLE_GRANT_TYPES,
    InitialAccessTokenState,
)
from oauth_provider.services.applications import application_delete, application_update, client_summary
from oauth_provider.services.tokens import checksum  # high-entropy credentials: SHA-256 finds them

DEFAULT_REGISTRATION_SCOPES = ("openid", "profile", "email", "offline_access", "users:read", "files:read")
DEFAULT_INITIAL_ACCESS_TOKEN_DAYS = 7
# Recognisable prefixes, for people and for secret scanners.
INITIAL_ACCESS_TOKEN_PREFIX = "iat_"  # noqa: S105
REGISTRATION_ACCESS_TOKEN_PREFIX = "rat_"  # noqa: S105
SHOWN_PREFIX_LENGTH = 10  # "iat_" and six characters: enough to tell tokens apart in a list

# RFC 7591 grant type -> the toolkit's one grant per client.
TOOLKIT_GRANT_TYPES = {
    GRANT_AUTHORIZATION_CODE: Application.GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS: Application.GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE: Application.GRANT_DEVICE_CODE,
}
RFC7591_GRANT_TYPES = {toolkit: rfc for rfc, toolkit in TOOLKIT_GRANT_TYPES.items()}
# Grants that a refresh token may come with (RFC 6749 §4.4.3: none for client credentials).
REFRESHABLE_GRANT_TYPES = frozenset({GRANT_AUTHORIZATION_CODE, GRANT_DEVICE_CODE})
FORBIDDEN_GRANT_TYPES = frozenset({"implicit", "password"})
AUTH_METHODS = frozenset(ClientRegistration.AuthMethod.values)
# Client metadata (RFC 7591 §2) -> our Application's field, where the names differ.
MODEL_FIELD_NAMES = {
    "name": "client_name",
    "allowed_scopes": "scope",
    "authorization_grant_type": "grant_types",
    "client_type": "token_endpoint_auth_method",
}
STRING_FIELDS = {
    "client_name": 255,
    "client_uri": 200,
    "logo_uri": 200,
    "policy_uri": 200,
    "tos_uri": 200,
    "software_id": 255,
    "software_version": 64,
}
URI_LIST_FIELDS = ("redirect_uris", "post_logout_redirect_uris")
_WHITESPACE = re.compile(r"[\s\x00-\x1f\x7f]")


# --- settings, read when used ----------------------------------------------------------------------


def registration_default_scopes() -> tuple[str, ...]:
    """Scopes a client registered with an initial access token may have, unless the token says."""
    return tuple(getattr(settings, "OAUTH_REGISTRATION_SCOPES", DEFAULT_REGISTRATION_SCOPES))


def initial_access_token_default_lifetime() -> timedelta:
    return timedelta(
        days=int(getattr(settings, "OAUTH_INITIAL_ACCESS_TOKEN_DAYS", DEFAULT_INITIAL_ACCESS_TOKEN_DAYS))
    )


def known_scopes() -> list[str]:
    """Every scope of the server, in the order the OAuth settings declare them."""
    return list(get_scopes_backend().get_all_scopes())


# --- initial access tokens -------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInitialAccessToken:
    """An initial access token together with its value in clear, which exists only at this moment."""

    initial_access_token: InitialAccessToken
    token: str


def _scopes_validate(scopes: Iterable[str], *, field_name: str) -> list[str]:
    scopes = list(dict.fromkeys(scopes))
    known = set(known_scopes())
    if unknown := [scope for scope in scopes if scope not in known]:
        raise ValidationError(
            {field_name: ValidationError(f"Unknown scopes: {' '.join(unknown)}.", code="scope_unknown")}
        )
    return scopes


@transaction.atomic
def initial_access_token_issue(
    *,
    label: str,
    created_by: User | None,
    expires_at: datetime | None = None,
    max_uses: int | None = None,
    allowed_scopes: Iterable[str] = (),
    allowed_grant_types: Iterable[str] | None = None,
) -> IssuedInitialAccessToken:
    """Issue a token that lets a client register itself; its value is returned once, never stored."""
    grant_types = list(dict.fromkeys(allowed_grant_types or (GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN)))
    if refused := [grant for grant in grant_types if grant not in REGISTRABLE_GRANT_TYPES]:
        raise ValidationError(
            {
                "allowed_grant_types": ValidationError(
                    f"Self-registered clients cannot use {', '.join(refused)}.", code="grant_type_not_allowed"
                )
            }
        )
    if not any(grant in TOOLKIT_GRANT_TYPES for grant in grant_types):
        raise ValidationError(
            {
                "allowed_grant_types": ValidationError(
                    "Allow at least one grant other than refresh_token.", code="grant_types_empty"
                )
            }
        )
    now = timezone.now()
    expires_at = expires_at or now + initial_access_token_default_lifetime()
    if expires_at <= now:
        raise ValidationError(
            {"expires_at": ValidationError("Choose an expiry in the future.", code="expiry_in_past")}
        )
    value = INITIAL_ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = InitialAccessToken(
        label=label.strip(),
        token_checksum=checksum(value),
        token_prefix=value[:SHOWN_PREFIX_LENGTH],
        created_by=created_by,
        expires_at=expires_at,
        max_uses=max_uses,
        allowed_scopes=" ".join(_scopes_validate(allowed_scopes, field_name="allowed_scopes")),
        allowed_grant_types=grant_types,
    )
    token.full_clean()
    token.save()
    audit_record(
        action="oauth.initial_access.issued",
        actor=created_by,
        target=token,
        metadata={
            "label": token.label,
            "expires_at": token.expires_at.isoformat(),
            "max_uses": token.max_uses,
            "scopes": token.allowed_scopes or "(default)",
            "grant_types": token.allowed_grant_types,
        },
    )
    return IssuedInitialAccessToken(initial_access_token=token, token=value)


@transaction.atomic
def initial_access_token_revoke(*, initial_access_token: InitialAccessToken, actor: User | None) -> None:
    """Revoke an initial access token: it registers no more clients (those it did are kept)."""
    token = InitialAccessToken.objects.select_for_update().get(pk=initial_access_token.pk)
    if token.revoked_at is not None:
        raise ValidationError("This initial access token is already revoked.", code="already_revoked")
    token.revoked_at = timezone.now()
    token.revoked_by = actor
    token.save(update_fields=["revoked_at", "revoked_by"])
    initial_access_token.revoked_at, initial_access_token.revoked_by = token.revoked_at, actor
    audit_record(
        action="oauth.initial_access.revoked",
        actor=actor,
        target=token,
        metadata={"label": token.label, "uses": token.uses},
    )


def initial_access_token_get(value: str) -> InitialAccessToken | None:
    """The initial access token with this value, whatever its state; None for an unknown one."""
    if not value.startswith(INITIAL_ACCESS_TOKEN_PREFIX):
        return None
    return InitialAccessToken.objects.filter(token_checksum=checksum(value)).first()


# --- the registration policy -----------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationPolicy:
    """What a registration may ask for: RFC 7591 grant types and scopes."""

    grant_types: frozenset[str]
    scopes: tuple[str, ...]


def registration_policy(
    *, initial_access_token: InitialAccessToken | None = None, staff: User | None = None
) -> RegistrationPolicy:
    """The policy of a registration by a staff member, or by the holder of an initial access token."""
    if staff is not None:
        return RegistrationPolicy(
            grant_types=frozenset(REGISTRABLE_GRANT_TYPES), scopes=tuple(known_scopes())
        )
    if initial_access_token is None:
        return RegistrationPolicy(
            grant_types=frozenset({GRANT_AUTHORIZATION_CODE, GRANT_REFRESH_TOKEN}),
            scopes=registration_default_scopes(),
        )
    grant_types = frozenset(initial_access_token.allowed_grant_types) & frozenset(REGISTRABLE_GRANT_TYPES)
    scopes = initial_access_token.allowed_scopes.split() or list(registration_default_scopes())
    return RegistrationPolicy(grant_types=grant_types, scopes=tuple(scopes))


def _policy_of(registration: ClientRegistration) -> RegistrationPolicy:
    return registration_policy(
        initial_access_token=registration.initial_access_token, staff=registration.registered_by
    )


# --- client metadata (RFC 7591 §2) ---------------------------------------------------------------


@dataclass(frozen=True)
class ClientMetadata:
    """Registration metadata that passed the policy, as fields of our Application."""

    fields: dict[str, Any]
    grant_types: list[str]
    token_endpoint_auth_method: str


@dataclass
class _Errors:
    found: dict[str, list[ValidationError]] = field(default_factory=dict)

    def add(self, name: str, message: str, code: str) -> None:
        self.found.setdefault(name, []).append(ValidationError(message, code=code))

    def raise_any(self) -> None:
        if self.found:
            raise ValidationError(self.found)


def _string_list(data: Mapping[str, Any], name: str, errors: _Errors) -> list[str]:
    value = data.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors.add(name, f"{name} must be an array of strings.", "invalid_type")
        return []
    return value


def _grant_types(data: Mapping[str, Any], policy: RegistrationPolicy, errors: _Errors) -> list[str]:
    requested = _string_list(data, "grant_types", errors) if "grant_types" in data else []
    if "grant_types" not in data:
        # RFC 7591 §2: authorization_code when omitted; with refresh tokens if the policy allows them.
        requested = [GRANT_AUTHORIZATION_CODE]
        if GRANT_REFRESH_TOKEN in policy.grant_types:
            requested.append(GRANT_REFRESH_TOKEN)
    requested = list(dict.fromkeys(requested))
    for grant in requested:
        if grant in FORBIDDEN_GRANT_TYPES:
            errors.add(
                "grant_types", f"The {grant} grant is not supported (RFC 9700).", "grant_type_forbidden"
            )
        elif grant not in REGISTRABLE_GRANT_TYPES:
            errors.add("grant_types", f"Unsupported grant type: {grant}.", "grant_type_unsupported")
        elif grant not in policy.grant_types:
            errors.add(
                "grant_types", f"This registration may not use the {grant} grant.", "grant_type_not_allowed"
            )
    main = [grant for grant in requested if grant in TOOLKIT_GRANT_TYPES]
    if not main and "grant_types" not in errors.found:
        errors.add("grant_types", "Name one grant type other than refresh_token.", "grant_types_empty")
    elif len(main) > 1:
        errors.add(
            "grant_types",
            "A client uses one grant type (and refresh_token with it); register one client per grant.",
            "grant_types_conflict",
        )
    elif main and GRANT_REFRESH_TOKEN in requested and main[0] not in REFRESHABLE_GRANT_TYPES:
        errors.add("grant_types", f"refresh_token cannot come with {main[0]}.", "grant_types_conflict")
    return requested


def _response_types(data: Mapping[str, Any], grant_types: list[str], errors: _Errors) -> None:
    if "response_types" not in data:
        return
    response_types = _string_list(data, "response_types", errors)
    expected = ["code"] if GRANT_AUTHORIZATION_CODE in grant_types else []
    if any(response_type != "code" for response_type in response_types):
        errors.add(
            "response_types",
            "Only the code response type is supported (no implicit or hybrid flow).",
            "response_type_forbidden",
        )
    elif sorted(set(response_types)) != expected:
        errors.add(
            "response_types",
            'response_types must be ["code"] with authorization_code, and empty otherwise.',
            "response_types_mismatch",
        )


def _scopes(data: Mapping[str, Any], policy: RegistrationPolicy, errors: _Errors) -> list[str]:
    value = data.get("scope")
    if value is None:
        return list(policy.scopes)  # RFC 7591 §2: the server's default set when omitted
    if not isinstance(value, str):
        errors.add("scope", "scope must be a space-separated string.", "invalid_type")
        return []
    scopes = list(dict.fromkeys(value.split()))
    known = set(known_scopes())
    if unknown := [scope for scope in scopes if scope not in known]:
        errors.add("scope", f"Unknown scopes: {' '.join(unknown)}.", "scope_unknown")
    if refused := [scope for scope in scopes if scope in known and scope not in policy.scopes]:
        errors.add(
            "scope", f"This registration may not have the scopes {' '.join(refused)}.", "scope_not_allowed"
        )
    return scopes


def client_metadata_validate(data: Mapping[str, Any], *, policy: RegistrationPolicy) -> ClientMetadata:
    """Check registration metadata against the policy; a `ValidationError` keyed by RFC 7591 field.

    Metadata this server does not know is ignored (RFC 7591 §2), software statements included.
    Redirect URIs and metadata URIs are left to the model's `clean()`.
    """
    errors = _Errors()
    grant_types = _grant_types(data, policy, errors)
    _response_types(data, grant_types, errors)
    auth_method = data.get("token_endpoint_auth_method", ClientRegistration.AuthMethod.CLIENT_SECRET_BASIC)
    if auth_method not in AUTH_METHODS:
        errors.add(
            "token_endpoint_auth_method",
            f"Supported token_endpoint_auth_method values: {', '.join(sorted(AUTH_METHODS))}.",
            "auth_method_unsupported",
        )
    elif auth_method == ClientRegistration.AuthMethod.NONE and GRANT_CLIENT_CREDENTIALS in grant_types:
        errors.add(
            "token_endpoint_auth_method",
            "client_credentials needs a confidential client (client_secret_basic or client_secret_post).",
            "public_client_grant",
        )
    scopes = _scopes(data, policy, errors)
    strings: dict[str, str] = {}
    for name, max_length in STRING_FIELDS.items():
        value = data.get(name, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            errors.add(name, f"{name} must be a string.", "invalid_type")
        elif len(value) > max_length:
            errors.add(name, f"{name} is longer than {max_length} characters.", "too_long")
        else:
            strings[name] = value.strip()
    uris = {name: _string_list(data, name, errors) for name in URI_LIST_FIELDS}
    for name, listed in uris.items():
        # Stored space-separated: a URI with a space in it would become two.
        for uri in listed:
            if _WHITESPACE.search(uri):
                errors.add(
                    name,
                    f"Redirect URI {uri[:120]} contains spaces or control characters.",
                    "redirect_uri_invalid",
                )
    contacts = _string_list(data, "contacts", errors)
    errors.raise_any()
    main_grant = next(grant for grant in grant_types if grant in TOOLKIT_GRANT_TYPES)
    is_public = auth_method == ClientRegistration.AuthMethod.NONE
    fields = {
        "name": strings.pop("client_name"),
        **strings,
        "client_type": Application.CLIENT_PUBLIC if is_public else Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": TOOLKIT_GRANT_TYPES[main_grant],
        "redirect_uris": " ".join(uris["redirect_uris"]),
        "post_logout_redirect_uris": " ".join(uris["post_logout_redirect_uris"]),
        "allowed_scopes": " ".join(scopes),
        "contacts": contacts,
        "require_pkce": True,
        "skip_authorization": False,  # never trusted: the user is always asked
    }
    return ClientMetadata(fields=fields, grant_types=grant_types, token_endpoint_auth_method=auth_method)


def _model_errors_as_metadata(error: ValidationError) -> ValidationError:
    """The model's field errors under the RFC 7591 names the client sent."""
    if not hasattr(error, "error_dict"):
        return error
    return ValidationError(
        {MODEL_FIELD_NAMES.get(name, name): errors for name, errors in error.error_dict.items()}
    )


# --- registering and managing a client (RFC 7591 §3, RFC 7592) -------------------------------------


class InitialAccessTokenUnusable(Exception):
    """The initial access token is revoked, expired or used up (checked again under its row lock)."""

    def __init__(self, state: InitialAccessTokenState) -> None:
        super().__init__(state)
        self.state = state


@dataclass(frozen=True)
class RegisteredClient:
    """A registered client with the credentials that exist in clear only in this response."""

    application: Application
    registration: ClientRegistration
    registration_access_token: str
    client_secret: str | None = None


def _new_registration_access_token() -> str:
    return REGISTRATION_ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def _via(registration: ClientRegistration) -> dict[str, Any]:
    """Who a registration came through, for audit events (never a secret)."""
    if registration.registered_by_id is not None:
        return {"via": "staff", "registered_by": str(registration.registered_by_id)}
    if registration.initial_access_token_id is not None:
        return {"via": "initial_access", "initial_access_id": str(registration.initial_access_token_id)}
    return {"via": "unknown"}


@transaction.atomic
def client_register(
    *,
    metadata: Mapping[str, Any],
    initial_access_token: InitialAccessToken | None = None,
    staff: User | None = None,
) -> RegisteredClient:
    """Register a client from RFC 7591 metadata, by a staff member or with an initial access token.

    Raises `InitialAccessTokenUnusable` when the token can register no more clients, and a
    `ValidationError` keyed by RFC 7591 field name when the metadata breaks the policy; either
    way nothing is written (the token's use count included).
    """
    if (initial_access_token is None) == (staff is None):
        raise ValueError("A registration comes with either an initial access token or a staff member.")
    token = None
    if initial_access_token is not None:
        token = InitialAccessToken.objects.select_for_update().get(pk=initial_access_token.pk)
        if token.state != InitialAccessTokenState.ACTIVE:
            raise InitialAccessTokenUnusable(token.state)
    parsed = client_metadata_validate(
        metadata, policy=registration_policy(initial_access_token=token, staff=staff)
    )
    secret = (
        generate_client_secret() if parsed.fields["client_type"] == Application.CLIENT_CONFIDENTIAL else ""
    )
    application = Application(
        **parsed.fields,
        user=staff,
        client_secret=secret,
        algorithm=Application.RS256_ALGORITHM,
        registration_source=Application.RegistrationSource.DCR,
    )
    try:
        application.full_clean()
    except ValidationError as error:
        raise _model_errors_as_metadata(error) from None
    application.save()
    registration_token = _new_registration_access_token()
    registration = ClientRegistration.objects.create(
        application=application,
        initial_access_token=token,
        registered_by=staff,
        token_endpoint_auth_method=parsed.token_endpoint_auth_method,
        registration_token_checksum=checksum(registration_token),
    )
    if token is not None:
        token.uses += 1
        token.last_used_at = timezone.now()
        token.save(update_fields=["uses", "last_used_at"])
    audit_record(
        action="oauth.client.registered",
        # The new client registered itself with the token; a staff member acts as themselves.
        actor=staff if staff is not None else application,
        target=application,
        metadata={
            **client_summary(application),
            **_via(registration),
            "grant_types": parsed.grant_types,
            "scopes": application.allowed_scopes,
            "redirect_uris": application.redirect_uris.split(),
            "client_type": application.client_type,
        },
    )
    return RegisteredClient(
        application=application,
        registration=registration,
        registration_access_token=registration_token,
        client_secret=secret or None,
    )


def client_registration_get(*, client_id: str, registration_access_token: str) -> ClientRegistration | None:
    """The registration this registration access token manages, if it is the one of `client_id`."""
    if not registration_access_token.startswith(REGISTRATION_ACCESS_TOKEN_PREFIX):
        return None
    registration = (
        ClientRegistration.objects.select_related("application", "initial_access_token", "registered_by")
        .filter(registration_token_checksum=checksum(registration_access_token))
        .first()
    )
    if registration is None or registration.application.client_id != client_id:
        return None
    if registration.application.registration_source != Application.RegistrationSource.DCR:
        return None
    return registration


@transaction.atomic
def client_registration_update(
    *, registration: ClientRegistration, metadata: Mapping[str, Any]
) -> RegisteredClient:
    """Replace a client's metadata (RFC 7592 §2.2) under the policy it was registered with.

    The client type stays: a public client cannot start using a secret, nor the reverse. A client
    that changes its own configuration loses any trust an admin gave it (`skip_authorization`):
    trust is given to a configuration someone reviewed. With DCR_ROTATE_REGISTRATION_TOKEN_ON_UPDATE
    a new registration access token is issued.
    """
    application = registration.application
    errors = _Errors()
    if metadata.get("client_id") != application.client_id:
        errors.add("client_id", "Send the client's own client_id (RFC 7592 §2.2).", "client_id_mismatch")
    if "client_secret" in metadata and not (
        isinstance(metadata["client_secret"], str)
        and application.client_secret
        and _secret_matches(application, metadata["client_secret"])
    ):
        errors.add(
            "client_secret", "client_secret does not match the client's secret.", "client_secret_mismatch"
        )
    errors.raise_any()
    parsed = client_metadata_validate(metadata, policy=_policy_of(registration))
    if parsed.fields["client_type"] != application.client_type:
        raise ValidationError(
            {
                "token_endpoint_auth_method": ValidationError(
                    "A client cannot switch between public and confidential; register a new client.",
                    code="client_type_change",
                )
            }
        )
    try:
        application_update(
            application=application, changes=parsed.fields, actor=application, via="registration"
        )
    except ValidationError as error:
        raise _model_errors_as_metadata(error) from None
    registration_token = None
    if oauth2_settings.DCR_ROTATE_REGISTRATION_TOKEN_ON_UPDATE:
        registration_token = _new_registration_access_token()
        registration.registration_token_checksum = checksum(registration_token)
    registration.token_endpoint_auth_method = parsed.token_endpoint_auth_method
    registration.save()
    return RegisteredClient(
        application=application,
        registration=registration,
        registration_access_token=registration_token or "",
    )


def _secret_matches(application: Application, secret: str) -> bool:
    return check_password(secret, application.client_secret)


@transaction.atomic
def client_registration_delete(*, registration: ClientRegistration) -> None:
    """Delete a dynamically registered client, at its own request (RFC 7592 §2.3)."""
    application_delete(
        application=registration.application, actor=registration.application, via="registration"
    )


def client_metadata_of(registration: ClientRegistration) -> dict[str, Any]:
    """A registered client's metadata as RFC 7591 §3.2.1 answers it (without credentials)."""
    application = registration.application
    toolkit_grant = str(application.authorization_grant_type)
    grant = RFC7591_GRANT_TYPES.get(toolkit_grant, toolkit_grant)
    grant_types = [grant, GRANT_REFRESH_TOKEN] if grant in REFRESHABLE_GRANT_TYPES else [grant]
    data: dict[str, Any] = {
        "client_id": application.client_id,
        "client_id_issued_at": int(application.created.timestamp()),
        "client_name": application.name,
        "redirect_uris": application.redirect_uris.split(),
        "grant_types": grant_types,
        "response_types": ["code"] if grant == GRANT_AUTHORIZATION_CODE else [],
        "token_endpoint_auth_method": registration.token_endpoint_auth_method,
        "scope": application.allowed_scopes,
    }
    if application.client_type == Application.CLIENT_CONFIDENTIAL:
        data["client_secret_expires_at"] = 0  # RFC 7591 §3.2.1: does not expire
    if application.post_logout_redirect_uris:
        data["post_logout_redirect_uris"] = application.post_logout_redirect_uris.split()
    for name in ("client_uri", "logo_uri", "policy_uri", "tos_uri", "software_id", "software_version"):
        if value := getattr(application, name):
            data[name] = value
    if application.contacts:
        data["contacts"] = application.contacts
    return data
