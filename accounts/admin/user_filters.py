"""The user changelist's sidebar filters: each one calls the `UserQuerySet` method the staff API's
filter of the same name calls (accounts/api/filters.py), so both lists agree."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from allauth.socialaccount import providers
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import Role, UserQuerySet

YES_NO = (("1", "Yes"), ("0", "No"))


class _YesNoFilter(admin.SimpleListFilter):
    """A yes/no filter; anything but `1` or `0` in the query string is refused (`?e=1`)."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return YES_NO

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value is None:
            return queryset
        if value not in ("1", "0"):
            raise IncorrectLookupParameters(f"{self.parameter_name} takes 1 or 0.")
        return self.filter(cast(UserQuerySet, queryset), value == "1")

    def filter(self, queryset: UserQuerySet, value: bool) -> UserQuerySet:
        raise NotImplementedError


class RoleFilter(admin.SimpleListFilter):
    title = "role"
    parameter_name = "role"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Role.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value is None:
            return queryset
        if value not in Role.values:
            raise IncorrectLookupParameters(f"Unknown role: {value}.")
        return cast(UserQuerySet, queryset).with_role(value)


class ActiveFilter(_YesNoFilter):
    title = "active"
    parameter_name = "is_active"

    def filter(self, queryset: UserQuerySet, value: bool) -> UserQuerySet:
        return queryset.filter(is_active=value)


class EmailVerifiedFilter(_YesNoFilter):
    title = "e-mail verified"
    parameter_name = "email_verified"

    def filter(self, queryset: UserQuerySet, value: bool) -> UserQuerySet:
        return queryset.with_email_verified(value)


class HasMfaFilter(_YesNoFilter):
    title = "two-factor authentication"
    parameter_name = "has_mfa"

    def filter(self, queryset: UserQuerySet, value: bool) -> UserQuerySet:
        return queryset.with_mfa(value)


class SocialProviderFilter(admin.SimpleListFilter):
    """The installed providers (no scan of the social accounts table), and whichever one a link
    asked for, as the API accepts any provider ID."""

    title = "social provider"
    parameter_name = "social_provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = dict(providers.registry.as_choices())
        value = self.value()
        if value and value not in choices:
            choices[value] = value
        return sorted(choices.items(), key=lambda choice: str(choice[1]).lower())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if not value:
            return queryset
        return cast(UserQuerySet, queryset).with_social_provider(value)


# Joined within the last N days (`created_after` in the API), or longer ago than a year.
JOINED_WITHIN_DAYS = {"1": 1, "7": 7, "30": 30, "365": 365}
JOINED_MORE_THAN_A_YEAR_AGO = "older"


class JoinedFilter(admin.SimpleListFilter):
    """When the account was created (`created_after` / `created_before` in the API).

    Exact ranges work as query parameters too: `?created_at__gte=2025-01-01&created_at__lt=2025-02-01`.
    """

    title = "joined"
    parameter_name = "joined"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("1", "Past 24 hours"),
            ("7", "Past 7 days"),
            ("30", "Past 30 days"),
            ("365", "Past year"),
            (JOINED_MORE_THAN_A_YEAR_AGO, "More than a year ago"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value is None:
            return queryset
        now = timezone.now()
        if value == JOINED_MORE_THAN_A_YEAR_AGO:
            return queryset.filter(created_at__lt=now - timedelta(days=365))
        if value not in JOINED_WITHIN_DAYS:
            raise IncorrectLookupParameters(f"Unknown joined range: {value}.")
        return queryset.filter(created_at__gte=now - timedelta(days=JOINED_WITHIN_DAYS[value]))
