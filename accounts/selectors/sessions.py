"""Reads of the devices a user is signed in on: app device sessions and browser sessions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from allauth.usersessions.models import UserSession

from accounts.models import DeviceSession, User

BROWSER_SESSION_NAMESPACE = uuid.UUID("0b6f8a52-4f0e-4b8e-9f55-2f1d6c1f3a10")


@dataclass(frozen=True)
class SignedInDevice:
    """A device the user is signed in on: an API client's device session or a browser session."""

    id: uuid.UUID
    kind: str  # "app" or "browser"
    label: str
    ip_address: str | None
    created_at: datetime
    last_used_at: datetime
    is_current: bool


def browser_session_public_id(user_session: UserSession) -> uuid.UUID:
    """A stable UUID for a browser session: its key is a credential and its row ID an integer."""
    return uuid.uuid5(BROWSER_SESSION_NAMESPACE, f"usersession:{user_session.pk}")


def signed_in_device_list(
    *, user: User, current_device_session_id: str | None = None, current_session_key: str | None = None
) -> list[SignedInDevice]:
    """Every live device of `user`, most recently used first, the caller's own one marked."""
    from accounts.services import device_label

    device_sessions = list(DeviceSession.objects.filter(user=user).active())
    app_session_keys = {session.session_key for session in device_sessions if session.session_key}
    devices = [
        SignedInDevice(
            id=session.id,
            kind="app",
            label=session.label,
            ip_address=session.ip_address,
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            is_current=str(session.id) == str(current_device_session_id),
        )
        for session in device_sessions
    ]
    for user_session in UserSession.objects.purge_and_list(user):
        if user_session.session_key in app_session_keys:
            continue  # the sign-in session behind an app's device session: listed once, as the app
        devices.append(
            SignedInDevice(
                id=browser_session_public_id(user_session),
                kind="browser",
                label=device_label(user_session.user_agent),
                ip_address=user_session.ip,
                created_at=user_session.created_at,
                last_used_at=user_session.last_seen_at,
                is_current=bool(current_session_key) and user_session.session_key == current_session_key,
            )
        )
    return sorted(devices, key=lambda device: device.last_used_at, reverse=True)


def browser_session_get(*, user: User, public_id: uuid.UUID) -> UserSession | None:
    for user_session in UserSession.objects.filter(user=user):
        if browser_session_public_id(user_session) == public_id:
            return user_session
    return None
