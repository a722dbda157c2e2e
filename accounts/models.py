"""The user model: final from the first migration (see docs/decisions/0001-user-model.md)."""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Lower, Replace

from accounts.validators import (
    USERNAME_MAX_LENGTH,
    USERNAME_PATTERN,
    UsernameValidator,
    display_name_matches_username,
)

DESCRIPTION_MAX_LENGTH = 256


class UserQuerySet(models.QuerySet["User"]):
    def with_email(self, email: str) -> UserQuerySet:
        return self.filter(email__iexact=email)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_queryset(self) -> UserQuerySet:
        return UserQuerySet(self.model, using=self._db)

    def with_email(self, email: str) -> UserQuerySet:
        return self.get_queryset().with_email(email)

    def get_by_natural_key(self, username: str | None) -> User:
        # Usernames are lowercase by rule, so sign-in is case-insensitive by construction.
        return self.get(username=(username or "").lower())

    def create_user(
        self, username: str, email: str, password: str | None = None, **extra_fields: Any
    ) -> User:
        from accounts.services import user_create

        return user_create(username=username, email=email, password=password, **extra_fields)

    def create_superuser(self, username: str, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(username, email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = models.CharField(
        max_length=USERNAME_MAX_LENGTH,
        unique=True,
        validators=[UsernameValidator()],
        help_text="3 to 32 characters: lowercase letters, digits and underscores.",
        error_messages={"unique": "This username is taken."},
    )
    display_name = models.CharField(
        max_length=USERNAME_MAX_LENGTH,
        blank=True,
        help_text="The username as people see it: only letter case and spaces for underscores may differ.",
    )
    email = models.EmailField(max_length=254)
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the admin site.")
    is_external_only = models.BooleanField(
        default=False,
        help_text="Signed up through an external provider and has no usable local password yet.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the owner asked for deletion; purged after the grace period."
    )

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ("username",)
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_code="email_taken",
                violation_error_message="A user with this e-mail address already exists.",
            ),
            models.CheckConstraint(
                condition=Q(username__regex=USERNAME_PATTERN),
                name="accounts_user_username_format",
                violation_error_code="username_invalid",
                violation_error_message="Usernames are 3 to 32 lowercase letters, digits and underscores.",
            ),
            models.CheckConstraint(
                condition=Q(username=Lower(Replace(F("display_name"), Value(" "), Value("_")))),
                name="accounts_user_display_name_matches_username",
                violation_error_code="display_name_mismatch",
                violation_error_message=(
                    "The display name may differ from the username only by letter case and spaces."
                ),
            ),
        ]
        indexes = [
            models.Index(fields=["created_at"], name="accounts_user_created_idx"),
            models.Index(fields=["deleted_at"], name="accounts_user_deleted_idx"),
        ]

    # Constraint errors Django reports as non-field errors, and the field each one is about.
    CONSTRAINT_FIELDS: ClassVar[dict[str, str]] = {
        "email_taken": "email",
        "username_invalid": "username",
        "display_name_mismatch": "display_name",
    }

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        super().clean()
        self.email = type(self).objects.normalize_email(self.email)
        if not self.display_name:
            self.display_name = self.username
        username_is_valid = bool(re.fullmatch(USERNAME_PATTERN, self.username or ""))
        if username_is_valid and not display_name_matches_username(self.display_name, self.username):
            raise ValidationError(
                {
                    "display_name": ValidationError(
                        "The display name may differ from the username only by letter case and spaces.",
                        code="display_name_mismatch",
                    )
                }
            )

    def validate_constraints(self, exclude: Any = None) -> None:
        try:
            super().validate_constraints(exclude=exclude)
        except ValidationError as error:
            raise self._errors_on_fields(error) from None

    def _errors_on_fields(self, error: ValidationError) -> ValidationError:
        by_field: dict[str, list[ValidationError]] = {}
        for field, errors in error.error_dict.items():
            for item in errors:
                target = (
                    self.CONSTRAINT_FIELDS.get(item.code or "", field) if field == NON_FIELD_ERRORS else field
                )
                by_field.setdefault(target, []).append(item)
        return ValidationError(by_field)

    def get_full_name(self) -> str:
        return self.display_name or self.username

    def get_short_name(self) -> str:
        return self.display_name or self.username


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
