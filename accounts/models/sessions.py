"""What a user is signed in with: device sessions of API clients, and the account lockout."""

from __future__ import annotations

import uuid

from django.db import models

from accounts.models.users import User


class DeviceSessionQuerySet(models.QuerySet["DeviceSession"]):
    def active(self) -> DeviceSessionQuerySet:
        return self.filter(revoked_at__isnull=True)


class DeviceSession(models.Model):
    """One signed-in device of an API client: every JWT pair it holds carries this session's ID.

    Only one refresh token of a device session is valid at a time (`refresh_jti`); presenting an
    older one is reuse, and revokes the session (docs/decisions/0005-device-sessions-and-jwt.md).
    """

    class RevokeReason(models.TextChoices):
        SIGNED_OUT = "signed_out", "Signed out"
        REVOKED = "revoked", "Revoked by the user"
        REFRESH_REUSED = "refresh_reused", "A used refresh token was presented again"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        DEACTIVATED = "deactivated", "Account deactivated"
        EXPIRED = "expired", "Expired"
        STAFF = "staff", "Revoked by staff"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="device_sessions")
    label = models.CharField(max_length=128, blank=True, help_text="The device, as read from its user agent.")
    user_agent = models.CharField(max_length=512, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    session_key = models.CharField(
        max_length=64,
        blank=True,
        db_index=True,
        help_text="The sign-in session (allauth) this device came from.",
    )
    refresh_jti = models.CharField(max_length=64, help_text="The one refresh token currently valid.")
    previous_refresh_jti = models.CharField(max_length=64, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField()
    expires_at = models.DateTimeField(
        help_text="When the refresh chain ends; signing in again starts a new one."
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=32, choices=RevokeReason.choices, blank=True)
    auth_time = models.DateTimeField(
        null=True, blank=True, help_text="When the user last proved who they are on this device."
    )
    amr = models.JSONField(
        default=list, blank=True, help_text="How they did (RFC 8176 methods: pwd, otp, hwk, ...)."
    )

    objects = DeviceSessionQuerySet.as_manager()

    class Meta:
        ordering = ("-last_used_at",)
        indexes = [models.Index(fields=["user", "revoked_at"], name="accounts_devsess_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} on {self.label or 'unknown device'}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class AccountLockout(models.Model):
    """Failed sign-in attempts of one account and the lockout they earned (escalating back-off)."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, primary_key=True, related_name="lockout")
    failed_attempts = models.PositiveIntegerField(
        default=0, help_text="Failures since the last success or lockout."
    )
    lockout_count = models.PositiveSmallIntegerField(
        default=0, help_text="Lockouts in a row; each lasts longer than the one before."
    )
    locked_until = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "account lockout"

    def __str__(self) -> str:
        return f"lockout of {self.user_id}"
