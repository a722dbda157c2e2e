"""What the user change page shows of a user's related records: read-only, one query each.

Nobody adds, changes or deletes these rows here: e-mail addresses change through the account flows
or the "Change e-mail" page, sessions end through the actions ("sign out everywhere", "lock down").
Whoever may view the user sees them (the `accounts.view_user` policy); the link to a record's own
admin page appears only for staff who may view that page (`linked_view_permission`).

Each list shows its first 50 rows and then says how many there are (`FirstRowsFormSet`): a user
with some 500 device sessions had a page Django refused to save.
"""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from accounts.models import DeviceSession
from accounts.policies import policy_allows
from accounts.services import device_label
from config.admin_pages import FirstRowsFormSet


class UserRecordInline(admin.TabularInline):
    formset = FirstRowsFormSet
    extra = 0
    max_num = 0
    can_delete = False
    # The permission that opens the row's own admin page; None: no link (no page, or secrets on it).
    linked_view_permission: str | None = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Each row's label (`__str__`) names its user: fetched with the row, not once per row.
        return super().get_queryset(request).select_related("user")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None:
            return policy_allows(request.user, "accounts.list_users")
        return policy_allows(request.user, "accounts.view_user", obj)

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class EmailAddressInline(UserRecordInline):
    model = EmailAddress
    fields = readonly_fields = ("email", "primary", "verified")
    ordering = ("-primary", "email")
    verbose_name_plural = "e-mail addresses"
    # A read-only page (accounts.admin.allauth_records); the address changes from the user's page.
    linked_view_permission = "account.view_emailaddress"


class SocialAccountInline(UserRecordInline):
    model = SocialAccount
    fields = readonly_fields = ("provider", "uid", "date_joined", "last_login")
    ordering = ("provider", "uid")
    linked_view_permission = "socialaccount.view_socialaccount"


# How staff read a factor type (allauth's own labels say "TOTP Authenticator" and "WebAuthn").
FACTOR_LABELS: dict[str, str] = {
    Authenticator.Type.TOTP: "authenticator app (TOTP)",
    Authenticator.Type.WEBAUTHN: "passkey or security key",
    Authenticator.Type.RECOVERY_CODES: "recovery codes",
}


class AuthenticatorInline(UserRecordInline):
    """The second factors; never their data (TOTP secrets, recovery code seeds, passkeys), so no link
    to allauth's admin, which shows it."""

    model = Authenticator
    fields = readonly_fields = ("factor", "created_at", "last_used_at")
    ordering = ("type", "created_at")
    verbose_name = "second factor"
    verbose_name_plural = "second factors (MFA)"

    @admin.display(description="factor", ordering="type")
    def factor(self, authenticator: Authenticator) -> str:
        return FACTOR_LABELS.get(authenticator.type, authenticator.type)


class DeviceSessionInline(UserRecordInline):
    """Signed-in API clients (JWT device sessions), newest use first, revoked ones included."""

    model = DeviceSession
    fields = readonly_fields = (
        "label",
        "ip_address",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoke_reason",
    )
    ordering = ("-last_used_at",)
    verbose_name = "app device session"


class BrowserSessionInline(UserRecordInline):
    """Signed-in browsers (allauth user sessions); never the session key, which is a credential."""

    model = UserSession
    fields = readonly_fields = ("device", "ip", "created_at", "last_seen_at")
    ordering = ("-last_seen_at",)
    verbose_name = "browser session"

    @admin.display(description="device")
    def device(self, user_session: UserSession) -> str:
        return device_label(user_session.user_agent)


USER_INLINES: tuple[type[UserRecordInline], ...] = (
    EmailAddressInline,
    SocialAccountInline,
    AuthenticatorInline,
    DeviceSessionInline,
    BrowserSessionInline,
)


def inline_show_change_link(inline: Any, request: HttpRequest) -> None:
    """Link each row to its own admin page when the caller may open that page."""
    permission: str | None = getattr(inline, "linked_view_permission", None)
    inline.show_change_link = permission is not None and request.user.has_perm(permission)
