"""Reads about second factors and how recently a user proved who they are.

How a user authenticated lives in their sign-in session, where allauth records every step
(`account_authentication_methods`: password, second factor, re-authentication, each with its
time). Browser requests carry that session; an API client's device session remembers its key, so
a JWT request can read the same records (docs/decisions/0012-mfa-and-step-up.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

from accounts import app_settings
from accounts.models import DeviceSession, User

# Whose records they are (allauth.account.internal.flows.login keeps it next to them).
AUTHENTICATION_METHODS_USER_SESSION_KEY = "account_authentication_methods_user"

# allauth's record of how a step was done -> RFC 8176 authentication method reference.
AMR_BY_MFA_TYPE = {"totp": "otp", "recovery_codes": "otp", "webauthn": "hwk", "email_code": "otp"}
AMR_BY_METHOD = {"password": "pwd", "code": "otp"}


def user_requires_mfa(user: User) -> bool:
    """The user's roles (or staff flag) oblige them to have a second factor."""
    if user.is_superuser:
        return True
    if app_settings.mfa_required_for_staff() and user.is_staff:
        return True
    return bool(app_settings.mfa_required_roles() & set(user.roles))


def user_mfa_missing(user: User) -> bool:
    """The user must have a second factor and has none: they are sent to set one up."""
    return user_requires_mfa(user) and not user.has_mfa


def user_may_use_email_codes(user: User) -> bool:
    """E-mail codes stand in for a second factor, except for users obliged to have a real one."""
    return app_settings.mfa_email_codes_enabled() and not user_requires_mfa(user)


def authentication_records(
    session: Mapping[str, Any] | None, *, user_id: object = None
) -> list[dict[str, Any]]:
    """allauth's records of how the session's user authenticated, oldest first.

    With `user_id`, records that allauth says belong to someone else count for nothing (as in
    allauth's own `get_authentication_records`).
    """
    if session is None:
        return []
    owner = session.get(AUTHENTICATION_METHODS_USER_SESSION_KEY)
    if user_id is not None and owner is not None and str(owner) != str(user_id):
        return []
    records = session.get(AUTHENTICATION_METHODS_SESSION_KEY)
    if not isinstance(records, list):
        return []
    return [record for record in records if isinstance(record, dict) and "at" in record]


def amr_of(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """RFC 8176 `amr` values of the steps in `records`; `mfa` when two kinds were combined."""
    methods: set[str] = set()
    for record in records:
        if record.get("method") == "mfa":
            value = AMR_BY_MFA_TYPE.get(str(record.get("type")))
        else:
            value = AMR_BY_METHOD.get(str(record.get("method")))
        if value:
            methods.add(value)
    if len(methods) > 1:
        methods.add("mfa")
    return sorted(methods)


def auth_time_of(records: Sequence[Mapping[str, Any]]) -> datetime | None:
    """When the user last proved who they are in these records (sign-in or re-authentication)."""
    times = [float(record["at"]) for record in records]
    return datetime.fromtimestamp(max(times), tz=UTC) if times else None


def reauthenticated_at(records: Sequence[Mapping[str, Any]]) -> float | None:
    """The time of the latest re-authentication (password or second factor asked again)."""
    times = [float(record["at"]) for record in records if record.get("reauthenticated")]
    return max(times) if times else None


def reauthenticated_recently(records: Sequence[Mapping[str, Any]], *, now: float | None = None) -> bool:
    """A re-authentication within ACCOUNT_REAUTHENTICATION_TIMEOUT, as allauth's own flows require."""
    at = reauthenticated_at(records)
    return at is not None and (now or time.time()) - at < app_settings.step_up_max_age()


def device_session_records(*, device_session_id: str) -> list[dict[str, Any]]:
    """The authentication records of the sign-in session behind an API client's device session."""
    from accounts.services import session_store

    device = DeviceSession.objects.filter(pk=device_session_id).values("session_key", "user_id").first()
    if device is None or not device["session_key"]:
        return []
    return authentication_records(session_store(device["session_key"]), user_id=device["user_id"])
