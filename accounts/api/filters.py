"""Filters of the staff user list; each one is a `UserQuerySet` method the Django admin uses too."""

from __future__ import annotations

import django_filters
from django.db.models import F, OrderBy

from accounts.models import Role, User, UserQuerySet


def _strict_boolean(**kwargs: object) -> django_filters.TypedChoiceFilter:
    """`true` or `false`; anything else is a 400 (django-filter's BooleanFilter ignores it)."""
    return django_filters.TypedChoiceFilter(
        choices=(("true", "true"), ("false", "false")),
        coerce=lambda value: value == "true",
        **kwargs,
    )


# Each ordering, with a unique tie-breaker so pages never repeat or skip users, on an index
# (`last_login` NULLS FIRST, `id`; `created_at`; `username` is unique).
ORDERINGS: dict[str, tuple[str | OrderBy, ...]] = {
    "username": ("username",),
    "-username": ("-username",),
    "created_at": ("created_at", "id"),
    "-created_at": ("-created_at", "-id"),
    "last_login": (F("last_login").asc(nulls_first=True), "id"),
    "-last_login": (F("last_login").desc(nulls_last=True), "-id"),
}


class UserOrderingFilter(django_filters.OrderingFilter):
    def filter(self, qs: UserQuerySet, value: list[str] | None) -> UserQuerySet:
        if not value:
            return qs
        return qs.order_by(*(expression for name in value for expression in ORDERINGS[name]))


class UserFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(
        method="filter_search", max_length=100, help_text="Part of the username, e-mail or display name."
    )
    role = django_filters.ChoiceFilter(choices=Role.choices, method="filter_role")
    is_active = _strict_boolean(field_name="is_active")
    email_verified = _strict_boolean(
        method="filter_email_verified", help_text="Whether the primary e-mail address is verified."
    )
    has_mfa = _strict_boolean(
        method="filter_has_mfa", help_text="Whether a second factor (TOTP or a passkey) is set up."
    )
    social_provider = django_filters.CharFilter(
        method="filter_social_provider", max_length=64, help_text="Has an account of this provider linked."
    )
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    ordering = UserOrderingFilter(
        fields=(("username", "username"), ("created_at", "created_at"), ("last_login", "last_login")),
        help_text=(
            "`username` (default), `created_at` or `last_login` (never signed in counts as oldest); "
            "prefix `-` for descending."
        ),
    )

    class Meta:
        model = User
        fields = ("is_active",)

    def filter_search(self, queryset: UserQuerySet, name: str, value: str) -> UserQuerySet:
        return queryset.search(value)

    def filter_role(self, queryset: UserQuerySet, name: str, value: str) -> UserQuerySet:
        return queryset.with_role(value)

    def filter_email_verified(self, queryset: UserQuerySet, name: str, value: bool | None) -> UserQuerySet:
        return queryset if value is None else queryset.with_email_verified(value)

    def filter_has_mfa(self, queryset: UserQuerySet, name: str, value: bool | None) -> UserQuerySet:
        return queryset if value is None else queryset.with_mfa(value)

    def filter_social_provider(self, queryset: UserQuerySet, name: str, value: str) -> UserQuerySet:
        return queryset.with_social_provider(value)
