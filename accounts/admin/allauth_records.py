"""allauth's e-mail addresses, second factors and browser sessions in the admin, read-only.

allauth's own admins show an authenticator's `data` (the TOTP secret, hashed recovery codes) and a
session's key, and let staff edit or delete them outside our services. These replace them with
read-only lists; resetting a user's MFA is a service of its own (issue 6), not a row deletion.
Editing an address row would leave `User.email` behind and skip the checks, the notice and the
audit event: staff change it from the user's page (`user_change_email`). Editing a social
account's user or UID would hand a sign-in identity to another account, and its stored provider
tokens (`SocialToken`) are credentials: the first is read-only here, the second not shown at all.
"""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount, SocialToken
from allauth.usersessions.models import UserSession
from django.contrib import admin
from django.http import HttpRequest


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(EmailAddress)
admin.site.unregister(SocialAccount)
admin.site.unregister(SocialToken)
admin.site.unregister(Authenticator)
admin.site.unregister(UserSession)


@admin.register(EmailAddress)
class EmailAddressAdmin(ReadOnlyAdmin):
    list_display = ("email", "user", "primary", "verified")
    list_filter = ("primary", "verified")
    list_select_related = ("user",)
    search_fields = ("email", "user__username")
    fields = ("user", "email", "primary", "verified")
    readonly_fields = fields


@admin.register(SocialAccount)
class SocialAccountAdmin(ReadOnlyAdmin):
    list_display = ("user", "provider", "uid", "last_login")
    list_filter = ("provider",)
    list_select_related = ("user",)
    search_fields = ("uid", "user__username", "user__email")
    fields = ("user", "provider", "uid", "date_joined", "last_login")  # not `extra_data`
    readonly_fields = fields


@admin.register(Authenticator)
class AuthenticatorAdmin(ReadOnlyAdmin):
    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    fields = ("user", "type", "created_at", "last_used_at")  # never `data`
    readonly_fields = fields


@admin.register(UserSession)
class UserSessionAdmin(ReadOnlyAdmin):
    list_display = ("user", "ip", "user_agent", "created_at", "last_seen_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "ip")
    fields = ("user", "ip", "user_agent", "created_at", "last_seen_at")  # never the session key
    readonly_fields = fields
