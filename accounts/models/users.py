"""The user model: final from the first migration (see docs/decisions/0001-user-model.md)."""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.db.models import Exists, F, OuterRef, Prefetch, Q, Value
from django.db.models.functions import Lower, Replace

from accounts.validators import (
    USERNAME_MAX_LENGTH,
    USERNAME_PATTERN,
    UsernameValidator,
    display_name_matches_username,
    email_address_canonical,
)

DESCRIPTION_MAX_LENGTH = 256
REASON_MAX_LENGTH = 256


class Role(models.TextChoices):
    """The service's roles, each a Django group of that name (docs/decisions/0008-roles-and-policies.md)."""

    ADMIN = "admin", "Administrator"
    MODERATOR = "moderator", "Moderator"
    TESTER = "tester", "Tester"
    USER = "user", "User"


# Roles that make a user staff (able to sign in to the Django admin).
STAFF_ROLES = frozenset({Role.ADMIN, Role.MODERATOR})


# Authenticator types that are a second factor on their own (recovery codes only back one up).
MFA_FACTOR_TYPES = ("totp", "webauthn")
# Fields `UserQuerySet.search` matches, case-insensitively, anywhere in the value.
SEARCH_FIELDS = ("username", "email", "display_name")
EMAIL_TAKEN_MESSAGE = "A user with this e-mail address already exists."
# Shorter search terms match as a prefix: a trigram index can't serve a substring under 3 characters.
SEARCH_MIN_SUBSTRING = 3
# Where `UserQuerySet.for_staff_list` puts its prefetches that `User.email_verified` and
# `User.has_mfa` read.
VERIFIED_PRIMARY_ADDRESSES = "_verified_primary_addresses"
MFA_AUTHENTICATORS = "_mfa_authenticators"


class UserQuerySet(models.QuerySet["User"]):
    """Chainable reads of users; the staff API and the Django admin filter with the same methods."""

    def with_email(self, email: str) -> UserQuerySet:
        return self.filter(email__iexact=email)

    def search(self, term: str) -> UserQuerySet:
        """Users whose username, e-mail or display name contains `term`, ignoring case.

        Served by trigram indexes on PostgreSQL (migration 0005). Those need three characters, so
        a shorter term matches the start of the values instead (a prefix the same indexes serve).
        """
        term = term.strip()
        if not term:
            return self
        lookup = "icontains" if len(term) >= SEARCH_MIN_SUBSTRING else "istartswith"
        condition = Q()
        for field in SEARCH_FIELDS:
            condition |= Q(**{f"{field}__{lookup}": term})
        return self.filter(condition)

    def with_role(self, role: str) -> UserQuerySet:
        if role == Role.USER:
            return self  # everyone has it: a join over every user would find them all
        return self.filter(groups__name=role)

    def with_email_verified(self, verified: bool) -> UserQuerySet:
        return self.filter(_email_verified_exists()) if verified else self.exclude(_email_verified_exists())

    def with_mfa(self, enabled: bool) -> UserQuerySet:
        return self.filter(_mfa_exists()) if enabled else self.exclude(_mfa_exists())

    def with_social_provider(self, provider: str) -> UserQuerySet:
        from allauth.socialaccount.models import SocialAccount

        return self.filter(Exists(SocialAccount.objects.filter(user=OuterRef("pk"), provider=provider)))

    def for_staff_list(self) -> UserQuerySet:
        """What a page of the staff list shows, in a constant number of queries: roles, social
        providers, the verified primary address and second factors prefetched for that page only.

        (As `EXISTS` annotations PostgreSQL would hash the whole address and authenticator tables
        for every page: bench/users_list.py.)
        """
        from allauth.account.models import EmailAddress
        from allauth.mfa.models import Authenticator
        from allauth.socialaccount.models import SocialAccount
        from django.contrib.auth.models import Group

        return self.prefetch_related(
            Prefetch("groups", queryset=Group.objects.only("id", "name")),
            Prefetch("socialaccount_set", queryset=SocialAccount.objects.only("id", "user_id", "provider")),
            Prefetch(
                "emailaddress_set",
                queryset=EmailAddress.objects.filter(primary=True, verified=True).only("id", "user_id"),
                to_attr=VERIFIED_PRIMARY_ADDRESSES,
            ),
            Prefetch(
                "authenticator_set",
                queryset=Authenticator.objects.filter(type__in=MFA_FACTOR_TYPES).only(
                    "id", "user_id", "type"
                ),
                to_attr=MFA_AUTHENTICATORS,
            ),
        )


def _email_verified_exists() -> Exists:
    """The user's primary e-mail address is verified."""
    from allauth.account.models import EmailAddress

    return Exists(EmailAddress.objects.filter(user=OuterRef("pk"), primary=True, verified=True))


def _mfa_exists() -> Exists:
    from allauth.mfa.models import Authenticator

    return Exists(Authenticator.objects.filter(user=OuterRef("pk"), type__in=MFA_FACTOR_TYPES))


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    """Creates users through `accounts.services.user_create`; every UserQuerySet method is here too."""

    use_in_migrations = True

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
    deactivation_reason = models.CharField(
        max_length=REASON_MAX_LENGTH, blank=True, help_text="Why staff deactivated the account, if they did."
    )
    purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When the grace period ended and personal data was erased."
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
                violation_error_message=EMAIL_TAKEN_MESSAGE,
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
            # The staff list's search and last-sign-in orderings have indexes that differ per
            # database: migration 0005_user_list_indexes.
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
        try:
            self.email = email_address_canonical(self.email)
        except ValidationError as error:
            raise ValidationError({"email": error}) from None
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

    @property
    def roles(self) -> list[str]:
        """The user's role names, sorted; one query unless groups are prefetched or cached."""
        cached: list[str] | None = getattr(self, "_roles", None)
        if cached is None:
            cached = sorted(group.name for group in self.groups.all() if group.name in Role.values)
            self._roles = cached
        return cached

    @property
    def email_verified(self) -> bool:
        """The primary e-mail address is verified; one query unless `for_staff_list` prefetched it."""
        prefetched = getattr(self, VERIFIED_PRIMARY_ADDRESSES, None)
        if prefetched is not None:
            return bool(prefetched)
        return type(self).objects.filter(pk=self.pk).with_email_verified(True).exists()

    @property
    def mfa_factor_types(self) -> list[str]:
        """The user's second factors (`totp`, `webauthn`), sorted; recovery codes only back them up.

        One query unless `for_staff_list` prefetched them or the cached copy of the user knew them.
        """
        known: list[str] | None = getattr(self, "_mfa_factor_types", None)
        if known is not None:
            return known
        prefetched = getattr(self, MFA_AUTHENTICATORS, None)
        if prefetched is None:
            from allauth.mfa.models import Authenticator

            prefetched = list(Authenticator.objects.filter(user_id=self.pk, type__in=MFA_FACTOR_TYPES))
        return sorted({authenticator.type for authenticator in prefetched})

    @property
    def requires_mfa(self) -> bool:
        """The user's roles (or staff flag) oblige them to have a second factor."""
        from accounts.selectors.mfa import user_requires_mfa

        return user_requires_mfa(self)

    def mfa_factor_types_known(self, types: list[str]) -> None:
        """Tell this object its second factors (from the cache), sparing `mfa_factor_types` a query."""
        self._mfa_factor_types = sorted(types)

    @property
    def has_mfa(self) -> bool:
        return bool(self.mfa_factor_types)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def get_full_name(self) -> str:
        return self.display_name or self.username

    def get_short_name(self) -> str:
        return self.display_name or self.username


class UserBlock(models.Model):
    """`blocker` no longer wants `blocked` to see them: their profile is a 404 to `blocked`."""

    blocker = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks_made")
    blocked = models.ForeignKey(User, on_delete=models.CASCADE, related_name="blocks_received")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="accounts_userblock_unique"),
            models.CheckConstraint(
                condition=~Q(blocker=F("blocked")),
                name="accounts_userblock_not_self",
                violation_error_code="block_self",
                violation_error_message="You cannot block yourself.",
            ),
        ]
        indexes = [models.Index(fields=["blocked", "blocker"], name="accounts_userblock_blocked_idx")]

    def __str__(self) -> str:
        return f"{self.blocker_id} blocks {self.blocked_id}"
