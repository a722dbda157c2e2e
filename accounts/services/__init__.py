"""Writes of the accounts app. Every state change of a user goes through a function in this package.

`users` holds sign-up, profile and device sessions; `moderation` roles, deactivation, lock-down and
blocks; `deletion` deletion with a grace period and data export; `organizations` organizations.
"""

from accounts.services.users import (
    REFRESH_RACE_WINDOW,
    browser_session_end,
    device_label,
    device_session_refresh,
    device_session_revoke,
    device_session_start,
    device_sessions_revoke,
    device_sessions_revoke_after_password_change,
    device_sessions_sign_out,
    session_store,
    sign_in_notify_if_new_device,
    signed_in_device_revoke,
    signed_in_devices_revoke_others,
    user_create,
    user_set_password,
    user_update_profile,
)

__all__ = [
    "REFRESH_RACE_WINDOW",
    "browser_session_end",
    "device_label",
    "device_session_refresh",
    "device_session_revoke",
    "device_session_start",
    "device_sessions_revoke",
    "device_sessions_revoke_after_password_change",
    "device_sessions_sign_out",
    "session_store",
    "sign_in_notify_if_new_device",
    "signed_in_device_revoke",
    "signed_in_devices_revoke_others",
    "user_create",
    "user_set_password",
    "user_update_profile",
]
