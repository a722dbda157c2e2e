"""Token families, reuse detection, revocation (the admin's "Revoke" included), audit of token
events and the cleanup of expired rows (docs/decisions/0015-oauth-tokens-and-grants.md).

The validator (oauth_provider/validators.py) calls these from the toolkit's hooks, inside the
transaction of the token request, so an event is written if and only if its change is.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from django.conf import settings
from django.db import models, transaction
from django.db.models import Min
from django.utils import timezone
from oauth2_provider.models import (
    AbstractAccessToken,
    AbstractRefreshToken,
    AccessToken,
    DeviceGrant,
    Grant,
    IDToken,
    RefreshToken,
    get_access_token_model,
    get_device_grant_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
    revoke_access_token,
)
from oauth2_provider.settings import oauth2_settings

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_record
from config.batches import delete_in_batches
from oauth_provider.models import Application, TokenFamily

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_TOKEN_MAX_AGE_DAYS = 90
DEFAULT_DEVICE_CODE_EXPIRE_SECONDS = 600
DEFAULT_CLEAR_EXPIRED_BATCH_SIZE = 1000

# --- settings (read when used) --------------------------------------------------------------------


def refresh_token_max_age() -> timedelta:
    """How long a refresh-token family lives from its first token, however often it rotates."""
    return timedelta(
        days=int(getattr(settings, "OAUTH_REFRESH_TOKEN_MAX_AGE_DAYS", DEFAULT_REFRESH_TOKEN_MAX_AGE_DAYS))
    )


def device_code_lifetime() -> int:
    """Seconds a device code and its user code can be used (RFC 8628 §3.2 `expires_in`)."""
    return int(getattr(settings, "OAUTH_DEVICE_CODE_EXPIRE_SECONDS", DEFAULT_DEVICE_CODE_EXPIRE_SECONDS))


def checksum(value: str) -> str:
    """The SHA-256 the toolkit (and we) store instead of a token or code."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _client_id(application: Application | None) -> str:
    return application.client_id if application is not None else ""


# --- families --------------------------------------------------------------------------------------


def token_family_start(
    *, family: uuid.UUID, application: Application, grant_type: str, code: str | None = None
) -> TokenFamily:
    """Record the start of a refresh-token family (and the code it was issued for)."""
    token_family, _ = TokenFamily.objects.get_or_create(
        family=family,
        defaults={
            "application": application,
            "grant_type": grant_type,
            "authorization_code_checksum": checksum(code) if code else None,
        },
    )
    return token_family


def token_family_started_at(family: uuid.UUID) -> datetime | None:
    """When the family's first refresh token was issued (its oldest row, for older families)."""
    started_at = TokenFamily.objects.filter(family=family).values_list("started_at", flat=True).first()
    if started_at is not None:
        return started_at
    oldest: datetime | None = (
        get_refresh_token_model()
        .objects.filter(token_family=family)
        .aggregate(oldest=Min("created"))["oldest"]
    )
    return oldest


def token_family_has_expired(family: uuid.UUID | None, *, now: datetime | None = None) -> bool:
    """Whether the family is older than its absolute lifetime (`refresh_token_max_age`)."""
    if family is None:
        return False
    started_at = token_family_started_at(family)
    return started_at is not None and started_at + refresh_token_max_age() <= (now or timezone.now())


@dataclass(frozen=True)
class RevokedFamily:
    refresh_tokens: int
    access_tokens: int


@transaction.atomic
def token_family_revoke(*, family: uuid.UUID) -> RevokedFamily:
    """Revoke every refresh token of the family and delete its access and ID tokens."""
    refresh_token_model = get_refresh_token_model()
    access_token_model = get_access_token_model()
    members = refresh_token_model.objects.filter(token_family=family)
    live = members.filter(revoked__isnull=True).count()
    access_tokens = access_token_model.objects.filter(pk__in=members.values("access_token_id"))
    # ID tokens delete their access token with them (the toolkit's CASCADE); read them first.
    id_token_ids = list(access_tokens.exclude(id_token__isnull=True).values_list("id_token_id", flat=True))
    deleted_access = access_tokens.count()
    refresh_token_model.revoke_family(family)  # the toolkit's set-based revocation
    get_id_token_model().objects.filter(pk__in=id_token_ids).delete()
    return RevokedFamily(refresh_tokens=live, access_tokens=deleted_access)


# --- reuse -------------------------------------------------------------------------------------------


@transaction.atomic
def authorization_code_reuse_revoke(*, code: str, application: Application) -> bool:
    """A code presented after it was redeemed: revoke every token issued from it (RFC 6749 §4.1.2).

    Records `oauth.authorization_code.reused` (failure). False when the code was never redeemed
    (unknown, expired, or another client's): nothing to revoke.
    """
    token_family = (
        TokenFamily.objects.select_for_update()
        .filter(authorization_code_checksum=checksum(code), application=application)
        .first()
    )
    if token_family is None:
        return False
    revoked = token_family_revoke(family=token_family.family)
    user_id = (
        get_refresh_token_model()
        .objects.filter(token_family=token_family.family)
        .values_list("user_id", flat=True)
        .first()
    )
    audit_record(
        action="oauth.authorization_code.reused",
        outcome=AuditEvent.Outcome.FAILURE,
        actor=application,
        target=("accounts.user", str(user_id), "") if user_id else application,
        metadata={
            "client_id": application.client_id,
            "family": str(token_family.family),
            "revoked": {"refresh": revoked.refresh_tokens, "access": revoked.access_tokens},
        },
    )
    return True


@transaction.atomic
def refresh_token_reuse_revoke(*, refresh_token: AbstractRefreshToken) -> RevokedFamily:
    """A rotated (or revoked) refresh token presented again: the whole family goes (RFC 9700 §4.14.2).

    Records `oauth.token.refresh_reused` (failure).
    """
    family = refresh_token.token_family
    revoked = token_family_revoke(family=family) if family else RevokedFamily(0, 0)
    application = refresh_token.application
    audit_record(
        action="oauth.token.refresh_reused",
        outcome=AuditEvent.Outcome.FAILURE,
        actor=application,
        target=refresh_token.user,
        metadata={
            "client_id": application.client_id,
            "family": str(family) if family else None,
            "revoked": {"refresh": revoked.refresh_tokens, "access": revoked.access_tokens},
        },
    )
    return revoked


# --- issuing and revoking ------------------------------------------------------------------------------


def token_issued_record(
    *,
    application: Application,
    user: Any,
    grant_type: str,
    scopes: list[str],
    refresh_token: AbstractRefreshToken | None,
) -> AuditEvent:
    """Record `oauth.token.issued`: who got what, never the token values."""
    return audit_record(
        action="oauth.token.issued",
        actor=application,
        target=user,
        metadata={
            "client_id": application.client_id,
            "grant_type": grant_type,
            "scopes": scopes,
            "refresh": refresh_token is not None,
            "family": str(refresh_token.token_family)
            if refresh_token and refresh_token.token_family
            else None,
        },
    )


@transaction.atomic
def access_token_revoke(*, access_token: AbstractAccessToken, actor: Application | None) -> bool:
    """End an access token now, leaving its refresh token usable (RFC 7009 §2.1 lets us choose).

    The row is kept, expired, rather than deleted: the toolkit treats a refresh token without its
    access token as an orphan and refuses it. False when it had already expired.
    """
    now = timezone.now()
    updated = (
        get_access_token_model()
        .objects.filter(pk=access_token.pk, expires__gt=now)
        .update(expires=now, updated=now)
    )
    if not updated:
        return False
    _revoked_record(kind="access", token=access_token, actor=actor)
    return True


@transaction.atomic
def refresh_token_revoke(*, refresh_token: AbstractRefreshToken, actor: Application | None) -> bool:
    """Revoke a refresh token and the access token issued with it (RFC 7009 §2.1)."""
    if refresh_token.revoked is not None:
        return False
    refresh_token.revoke()  # the toolkit's: marks it revoked, deletes its access token
    _revoked_record(kind="refresh", token=refresh_token, actor=actor)
    return True


def _revoked_record(*, kind: str, token: AbstractAccessToken | AbstractRefreshToken, actor: Any) -> None:
    audit_record(
        action="oauth.token.revoked",
        actor=actor,
        target=token.user if token.user_id else token.application,
        metadata={
            "kind": kind,
            "record_id": token.pk,
            "client_id": _client_id(token.application),
            "via": "rfc7009",
        },
    )


# --- revoking grants and tokens (the admin's "Revoke" actions) -------------------------------------

Revocable: TypeAlias = AccessToken | RefreshToken | Grant | IDToken | DeviceGrant


def _token_kind(token: Revocable) -> str:
    return type(token)._meta.model_name or type(token).__name__.lower()


def _token_already_revoked(token: Revocable) -> bool:
    if isinstance(token, RefreshToken):
        return token.revoked is not None
    if isinstance(token, DeviceGrant):
        return token.status in (DeviceGrant.DENIED, DeviceGrant.EXPIRED)
    return False  # the others are deleted when revoked


@transaction.atomic
def token_revoke(*, token: Revocable, actor: User | None) -> bool:
    """Revoke a grant or token with the toolkit's own revoke; False when it was revoked already.

    A refresh token takes its access token with it, an access token its refresh token (RFC 7009
    §2.1), an ID token the access token issued with it, an authorization code can no longer be
    redeemed, and a device authorization is denied.
    """
    if _token_already_revoked(token):
        return False
    application = None if isinstance(token, DeviceGrant) else token.application
    client_id = token.client_id if isinstance(token, DeviceGrant) else getattr(application, "client_id", "")
    # The event is about the user whose token it was (their timeline), else about the client.
    target: Any = token.user if token.user_id else application
    metadata = {"kind": _token_kind(token), "record_id": token.pk, "client_id": client_id}
    if isinstance(token, RefreshToken):
        token.revoke()  # marks it revoked and deletes its access token
    elif isinstance(token, AccessToken):
        revoke_access_token(token)
    elif isinstance(token, IDToken):
        access_token = get_access_token_model().objects.filter(id_token=token).first()
        if access_token is not None:
            revoke_access_token(access_token)
        token.delete()
    elif isinstance(token, Grant):
        token.delete()
    else:
        token.status = DeviceGrant.DENIED
        token.save(update_fields=["status", "last_checked"])
    audit_record(action="oauth.token.revoked", actor=actor, target=target, metadata=metadata)
    return True


def token_expired(token: Revocable) -> bool:
    """Whether a token or grant is past its expiry (refresh tokens: REFRESH_TOKEN_EXPIRE_SECONDS)."""
    if isinstance(token, RefreshToken):
        lifetime = refresh_token_expire_timedelta()
        return lifetime is not None and token.created + lifetime <= timezone.now()
    return bool(token.expires <= timezone.now())


# --- cleanup -----------------------------------------------------------------------------------------------


def tokens_clear_expired(*, batch_size: int | None = None, now: datetime | None = None) -> dict[str, int]:
    """Delete expired and dead OAuth rows in small batches; safe to run again at any time.

    What goes, and when (the toolkit's `clear_expired` rules, plus device grants and families):
    revoked refresh tokens once REFRESH_TOKEN_EXPIRE_SECONDS has passed since (reuse detection
    needs them until then), live ones idle that long or past their family's absolute lifetime,
    orphaned ones, access tokens expired without a refresh token, ID tokens expired without an
    access token, authorization codes and device codes past their expiry, and family records
    older than the absolute lifetime.
    """
    now = now or timezone.now()
    size = batch_size or int(
        oauth2_settings.CLEAR_EXPIRED_TOKENS_BATCH_SIZE or DEFAULT_CLEAR_EXPIRED_BATCH_SIZE
    )
    pause = float(oauth2_settings.CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL or 0)
    idle = refresh_token_expire_timedelta()
    family_cutoff = now - refresh_token_max_age()
    refresh_token_model = get_refresh_token_model()

    refresh_dead = models.Q(revoked__isnull=True, access_token__isnull=True) | models.Q(
        token_family__in=TokenFamily.objects.filter(started_at__lte=family_cutoff).values("family")
    )
    if idle:
        refresh_dead |= models.Q(revoked__lte=now - idle) | models.Q(
            revoked__isnull=True, access_token__expires__lte=now - idle
        )
    plan: list[tuple[str, type[models.Model], models.Q]] = [
        ("refresh_tokens", refresh_token_model, refresh_dead),
        ("access_tokens", get_access_token_model(), models.Q(refresh_token__isnull=True, expires__lt=now)),
        ("id_tokens", get_id_token_model(), models.Q(access_token__isnull=True, expires__lt=now)),
        ("authorization_codes", get_grant_model(), models.Q(expires__lt=now)),
        ("device_codes", get_device_grant_model(), models.Q(expires__lt=now)),
        ("token_families", TokenFamily, models.Q(started_at__lte=family_cutoff)),
    ]
    deleted: dict[str, int] = {}
    for name, model, condition in plan:
        deleted[name] = delete_in_batches(model, condition, batch_size=size, pause=pause)
        logger.info("Expired OAuth %s deleted: %s", name, deleted[name])
    return deleted


# --- introspection (RFC 7662) ------------------------------------------------------------------------------

INACTIVE: dict[str, Any] = {"active": False}
# RFC 7662 §2.2 `token_type` values, and the RFC 7009 §2.1 hint naming a refresh token.
ACCESS_TOKEN_TYPE = "Bearer"  # noqa: S105 (a token type name)
REFRESH_TOKEN_TYPE = "refresh_token"  # noqa: S105 (a token type name)


def client_may_introspect_any_token(client: Application) -> bool:
    """A resource server: a confidential client staff gave the `introspection` permission."""
    return (
        client.client_type == Application.CLIENT_CONFIDENTIAL
        and "introspection" in client.allowed_scopes.split()
    )


def api_resource_identifier() -> str:
    """Our API's resource identifier (RFC 9728 §2 `resource`; the issuer when unset)."""
    return str(oauth2_settings.OAUTH2_PROTECTED_RESOURCE_IDENTIFIER or oauth2_settings.OIDC_ISS_ENDPOINT)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def token_introspection(*, token: str, token_type_hint: str | None, client: Application) -> dict[str, Any]:
    """What RFC 7662 §2.2 says about `token` to `client`, or `{"active": false}`.

    A client learns about its own tokens; only a resource server (`introspection` permission)
    learns about other clients' tokens: to anyone else they are `{"active": false}`, like an
    unknown token, so nothing leaks about them. Expired, revoked, deactivated users' and dead
    clients' tokens are inactive.
    """
    access_token_model = get_access_token_model()
    refresh_token_model = get_refresh_token_model()
    digest = checksum(token)
    lookups: list[Callable[[], dict[str, Any] | None]] = [
        lambda: _access_token_introspection(
            access_token_model.objects.select_related("application", "user")
            .filter(token_checksum=digest)
            .first(),
            client,
        ),
        lambda: _refresh_token_introspection(
            refresh_token_model.objects.select_related("application", "user", "access_token")
            .filter(token_checksum=digest)
            .order_by(models.F("revoked").desc(nulls_first=True))
            .first(),
            client,
        ),
    ]
    if token_type_hint == REFRESH_TOKEN_TYPE:
        lookups.reverse()
    for lookup in lookups:
        answer = lookup()
        if answer is not None:
            return answer
    return INACTIVE


def _may_see(client: Application, application: Application | None) -> bool:
    return (application is not None and application.pk == client.pk) or client_may_introspect_any_token(
        client
    )


def _claims_of(
    token: AbstractAccessToken | AbstractRefreshToken, *, token_type: str, expires: datetime | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "active": True,
        "token_type": token_type,
        "client_id": _client_id(token.application),
        "iat": _epoch(token.created),
        "iss": oauth2_settings.OIDC_ISS_ENDPOINT,
    }
    if expires is not None:
        data["exp"] = _epoch(expires)
    if token.user is not None:
        data["sub"] = str(token.user.pk)
        data["username"] = token.user.get_username()
    # RFC 7662 §2.2 `aud`: the resources the token was bound to (RFC 8707), else our API (the
    # RFC 9728 `resource`), which accepts every token without a resource.
    data["aud"] = list(token.resource) if token.resource else [api_resource_identifier()]
    return data


def _access_token_introspection(
    access_token: AbstractAccessToken | None, client: Application
) -> dict[str, Any] | None:
    if access_token is None:
        return None
    if not _may_see(client, access_token.application):
        return INACTIVE
    user = access_token.user
    if access_token.is_expired() or (user is not None and not user.is_active):
        return INACTIVE
    return {
        "scope": access_token.scope,
        **_claims_of(access_token, token_type=ACCESS_TOKEN_TYPE, expires=access_token.expires),
    }


def _refresh_token_introspection(
    refresh_token: AbstractRefreshToken | None, client: Application
) -> dict[str, Any] | None:
    if refresh_token is None:
        return None
    if not _may_see(client, refresh_token.application):
        return INACTIVE
    access_token = refresh_token.access_token
    if refresh_token.revoked is not None or access_token is None or not refresh_token.user.is_active:
        return INACTIVE
    deadlines = []
    if idle := refresh_token_expire_timedelta():
        deadlines.append(access_token.expires + idle)
    if refresh_token.token_family and (started_at := token_family_started_at(refresh_token.token_family)):
        deadlines.append(started_at + refresh_token_max_age())
    expires = min(deadlines) if deadlines else None
    if expires is not None and expires <= timezone.now():
        return INACTIVE
    return {
        "scope": access_token.scope,
        **_claims_of(refresh_token, token_type=REFRESH_TOKEN_TYPE, expires=expires),
    }
