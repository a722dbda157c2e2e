"""First-party JWTs: pairs issued to a device session, and the revocation state checked per request.

Hot path: validating an access token costs one cache round trip (session state + user), never a
database query while the cache is warm. The database stays the source of truth: a cache miss or
a cache outage (django-redis then answers misses, see settings) falls back to it
(docs/decisions/0005-device-sessions-and-jwt.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def session_cache_key(session_id: object) -> str:
    return f"auth:device-session:{session_id}"


def user_cache_key(user_id: object) -> str:
    return f"auth:user:{user_id}"


def state_cache_timeout() -> int:
    """Keep revocation marks at least as long as an access token can live."""
    return int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds()) + 60


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


def device_session_mark(*, session_id: object, state: str) -> None:
    """Record a device session's state in the cache (after the change has committed)."""
    cache.set(session_cache_key(session_id), state, state_cache_timeout())


def user_forget(*, user_id: object) -> None:
    """Drop the cached copy of a user, so the next request reads the database."""
    cache.delete(user_cache_key(user_id))


def access_token_user(*, token: AccessToken) -> User | None:
    """Return the active user of a valid access token whose device session is live, else None."""
    session_id = token.get(SESSION_CLAIM)
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    if not session_id or not user_id:
        return None
    keys = [session_cache_key(session_id), user_cache_key(user_id)]
    cached = cache.get_many(keys)  # {} while the cache is down (DJANGO_REDIS_IGNORE_EXCEPTIONS)
    state, user_fields = cached.get(keys[0]), cached.get(keys[1])
    if state is None or user_fields is None:
        session = DeviceSession.objects.select_related("user").filter(pk=session_id, user_id=user_id).first()
        if session is None:
            return None
        state = ACTIVE if session.is_active else REVOKED
        user_fields = user_cache_dump(session.user)
        cache.set_many({keys[0]: state, keys[1]: user_fields}, state_cache_timeout())
    user = user_cache_load(user_fields)
    if state != ACTIVE or not user.is_active:
        return None
    return user


def user_cache_dump(user: User) -> dict[str, Any]:
    """The user's columns for the cache: everything but the password hash."""
    values = {field: getattr(user, field) for field in CACHED_USER_FIELDS}
    values[ROLES_KEY] = user.roles  # policies read roles on every API call: keep them off the database
    values[MFA_FACTORS_KEY] = user.mfa_factor_types  # so does the MFA requirement
    return values


def user_cache_load(values: dict[str, Any]) -> User:
    """Rebuild a user from the cache. The password stays deferred: reading it queries the database,
    and `save()` writes only the loaded columns, so a cached copy can never overwrite it."""
    values = dict(values)
    roles = values.pop(ROLES_KEY, None)
    factor_types = values.pop(MFA_FACTORS_KEY, None)
    user = User.from_db("default", list(values), list(values.values()))
    if roles is not None:
        user._roles = roles
    if factor_types is not None:
        user.mfa_factor_types_known(factor_types)
    return user
