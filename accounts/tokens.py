"""First-party JWTs: pairs issued to a device session, and the revocation state checked per request.

Hot path: validating an access token costs one cache round trip (session state + user), never a
database query while the cache is warm. The database stays the source of truth: a cache miss or
a cache outage (django-redis then answers misses, see settings) falls back to it.

The cache is told of every revocation and user change after commit, best effort; an invalidation
can still be lost (sent to a stopped or hung Redis, or undone by a snapshot that Redis reloads).
So nothing the cache says is believed for longer than `ACCOUNTS_AUTH_CACHE_SECONDS` after the
database said it, and a lost invalidation ends within that bound
(docs/decisions/0005-device-sessions-and-jwt.md, "Revocation when the cache fails").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import DeviceSession, User

SESSION_CLAIM = "sid"
# Where a sign-in session remembers the device session it opened; survives session key cycling.
DEVICE_SESSION_ID_KEY = "accounts.device_session_id"
CACHED_USER_FIELDS = tuple(
    field.attname for field in User._meta.concrete_fields if field.attname != "password"
)
ROLES_KEY = "_roles"
MFA_FACTORS_KEY = "_mfa_factor_types"
CONFIRMED_AT_KEY = "_confirmed_at"
# A device session's cache entry: REVOKED (final), or (ACTIVE, when the database said so).
ACTIVE = "active"
REVOKED = "revoked"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def as_response(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


# "v2": entries say when the database confirmed them. A worker of an earlier release, which
# believed its entries until they expired, reads other keys and never mistakes these for its own.
def session_cache_key(session_id: object) -> str:
    return f"auth:v2:device-session:{session_id}"


def user_cache_key(user_id: object) -> str:
    return f"auth:v2:user:{user_id}"


def auth_cache_seconds() -> int:
    """How long the cache's word that a session is active, or what a user is, is believed without
    asking the database again: the longest a lost invalidation can outlive the change it announced."""
    return max(int(getattr(settings, "ACCOUNTS_AUTH_CACHE_SECONDS", 30)), 0)


def state_cache_timeout() -> int:
    """Keep revocation marks at least as long as an access token can live."""
    return int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()) + 60


def confirmation_cache_timeout() -> int:
    """Redis keeps a confirmed entry a little past its belief, so that a request finding it stale
    overwrites it (`set`) instead of racing a revocation mark for an empty key (`add`)."""
    return auth_cache_seconds() + 5


def confirmed_recently(confirmed_at: object, *, now: float) -> bool:
    """Whether the database said it within the bound (by this node's clock: the bound stretches
    by the difference between the clocks of the nodes, and an entry from a clock more than the
    bound ahead is not believed at all)."""
    if not isinstance(confirmed_at, int | float):
        return False
    return abs(now - confirmed_at) <= auth_cache_seconds()


def token_pair_issue(*, session: DeviceSession) -> TokenPair:
    """Sign a new access/refresh pair for `session`, whose `refresh_jti` names the refresh token."""
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(session.user_id)
    refresh[SESSION_CLAIM] = str(session.id)
    refresh[jwt_settings.JTI_CLAIM] = session.refresh_jti
    if session.auth_time is not None:
        # OpenID Connect Core §2: when the user last authenticated, and how (RFC 8176).
        refresh["auth_time"] = int(session.auth_time.timestamp())
    refresh["amr"] = list(session.amr or [])
    access = refresh.access_token
    return TokenPair(
        access_token=str(access),
        refresh_token=str(refresh),
        expires_in=int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
    )


def device_session_mark_revoked(*, session_id: object) -> None:
    """Tell the cache a device session is revoked (after the change has committed).

    Best effort: if the mark is lost, the cache's "active" entry is believed for at most
    `auth_cache_seconds()` more. A revoked session is never active again, so the mark is final.
    """
    cache.set(session_cache_key(session_id), REVOKED, state_cache_timeout())


def user_forget(*, user_id: object) -> None:
    """Drop the cached copy of a user, so the next request reads the database (best effort, as
    `device_session_mark_revoked`: a lost one is bounded by `auth_cache_seconds()`)."""
    cache.delete(user_cache_key(user_id))


def access_token_user(*, token: AccessToken) -> User | None:
    """Return the active user of a valid access token whose device session is live, else None.

    One cache round trip while the cache holds entries the database confirmed within
    `auth_cache_seconds()`; otherwise the database decides and the cache is refilled.
    """
    session_id = token.get(SESSION_CLAIM)
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    if not session_id or not user_id:
        return None
    session_key, user_key = session_cache_key(session_id), user_cache_key(user_id)
    cached = cache.get_many([session_key, user_key])  # {} while the cache is down
    now = time.time()  # before any database read: the entries written below are no newer than it
    state, user_values = cached.get(session_key), cached.get(user_key)
    if state == REVOKED:
        return None
    state_confirmed = (
        isinstance(state, tuple) and state[0] == ACTIVE and confirmed_recently(state[1], now=now)
    )
    confirmed_user: dict[str, Any] | None = (
        user_values
        if isinstance(user_values, dict) and confirmed_recently(user_values.get(CONFIRMED_AT_KEY), now=now)
        else None
    )
    if state_confirmed and confirmed_user is not None:
        user = user_cache_load(confirmed_user)
        return user if user.is_active else None

    session = DeviceSession.objects.select_related("user").filter(pk=session_id, user_id=user_id).first()
    if session is None:
        return None
    if not session.is_active:
        device_session_mark_revoked(session_id=session_id)
        return None
    if confirmed_user is not None:
        user = user_cache_load(confirmed_user)
    else:
        user = session.user
        if auth_cache_seconds():
            cache.set(user_key, user_cache_dump(user, confirmed_at=now), confirmation_cache_timeout())
    if auth_cache_seconds():
        # `add` into an empty key: a revocation committed since the read above may have marked it.
        write = cache.add if state is None else cache.set
        write(session_key, (ACTIVE, now), confirmation_cache_timeout())
    return user if user.is_active else None


def user_cache_dump(user: User, *, confirmed_at: float) -> dict[str, Any]:
    """The user's columns for the cache: everything but the password hash."""
    values = {field: getattr(user, field) for field in CACHED_USER_FIELDS}
    values[ROLES_KEY] = user.roles  # policies read roles on every API call: keep them off the database
    values[MFA_FACTORS_KEY] = user.mfa_factor_types  # so does the MFA requirement
    values[CONFIRMED_AT_KEY] = confirmed_at
    return values


def user_cache_load(values: dict[str, Any]) -> User:
    """Rebuild a user from the cache. The password stays deferred: reading it queries the database,
    and `save()` writes only the loaded columns, so a cached copy can never overwrite it."""
    values = dict(values)
    roles = values.pop(ROLES_KEY, None)
    factor_types = values.pop(MFA_FACTORS_KEY, None)
    values.pop(CONFIRMED_AT_KEY, None)
    user = User.from_db("default", list(values), list(values.values()))
    if roles is not None:
        user._roles = roles
    if factor_types is not None:
        user.mfa_factor_types_known(factor_types)
    return user
