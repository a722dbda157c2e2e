"""The toolkit's grants and tokens in the Django admin: read-only lists with a "Revoke" action.

They replace the toolkit's own admins. Staff list and open them (user, client, scopes, expiry,
state), search by username, e-mail address or client ID, and filter by client and state; only
admins revoke (accounts/policies.py, "OAuth clients"), through `oauth_provider.services.tokens.token_revoke`,
which uses the toolkit's revoke (a refresh token takes its access token along) and audits
`oauth.token.revoked`. Tokens are stored hashed: a list shows the first characters of a token's
SHA-256 checksum, never a token, an authorization code or a device's codes.

Every changelist page costs the same number of queries whatever its length (`list_select_related`,
no per-row lookups, no full count, no facet counts).
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from oauth2_provider.models import (
    AccessToken,
    DeviceGrant,
    Grant,
    IDToken,
    RefreshToken,
    refresh_token_expire_timedelta,
)

from accounts.models import User
from accounts.policies import policy_allows
from oauth_provider.services.tokens import Revocable, token_expired, token_revoke

# One action revokes at most this many: each is its own audited transaction.
REVOKE_LIMIT = 500
CHECKSUM_SHOWN = 10

for _model in (AccessToken, RefreshToken, IDToken, Grant):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class StateFilter(admin.SimpleListFilter):
    """Active or expired, from `expires` (on its index, when the model has one)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(expires__gt=now)
        if self.value() == "expired":
            return queryset.filter(expires__lte=now)
        return queryset


class RefreshTokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "revoked":
            return queryset.filter(revoked__isnull=False)
        live = queryset.filter(revoked__isnull=True)
        lifetime = refresh_token_expire_timedelta()  # None: refresh tokens do not age out
        if self.value() == "active":
            return live.filter(created__gt=timezone.now() - lifetime) if lifetime else live
        if self.value() == "expired":
            return live.filter(created__lte=timezone.now() - lifetime) if lifetime else live.none()
        return queryset


class DeviceGrantStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in DeviceGrant.DEVICE_FLOW_STATUS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == DeviceGrant.EXPIRED:
            return queryset.filter(status=DeviceGrant.EXPIRED) | queryset.filter(
                status=DeviceGrant.AUTHORIZATION_PENDING, expires__lte=now
            )
        if self.value() == DeviceGrant.AUTHORIZATION_PENDING:
            return queryset.filter(status=DeviceGrant.AUTHORIZATION_PENDING, expires__gt=now)
        if self.value():
            return queryset.filter(status=self.value())
        return queryset


class TokenAdmin(admin.ModelAdmin):
    """Read-only, searchable by user and client, with the audited "Revoke" action for admins."""

    actions = ("revoke_selected",)
    list_select_related: ClassVar[bool | tuple[str, ...]] = ("user", "application")
    list_filter: ClassVar[tuple[Any, ...]] = (StateFilter, "application")
    search_fields: ClassVar[tuple[str, ...]] = ("user__username", "user__email", "=application__client_id")
    search_help_text = "Part of a username or e-mail address, or an exact client ID."
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    kind = "token"

    def _permission(self, action: str) -> str:
        return f"oauth2_provider.{action}_{self.opts.model_name}"

    def has_module_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "oauth2_provider")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, self._permission("view"), obj)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, self._permission("revoke"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the OAuth flows issue them

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # revoke instead: a deleted access token would leave its refresh token usable

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return self.get_fields(request, obj)

    @admin.action(description="Revoke selected", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        selected = list(queryset[: REVOKE_LIMIT + 1])
        if len(selected) > REVOKE_LIMIT:
            self.message_user(
                request, f"Select at most {REVOKE_LIMIT} for one action; nothing changed.", messages.ERROR
            )
            return
        actor = cast(User, request.user)
        revoked = sum(token_revoke(token=token, actor=actor) for token in selected)
        self.message_user(request, f"Revoked {revoked} of {len(selected)} selected.", messages.SUCCESS)
        if already := len(selected) - revoked:
            self.message_user(request, f"{already} were revoked already.")

    # --- columns ----------------------------------------------------------------------------------

    @admin.display(description="checksum")
    def checksum(self, token: Any) -> str:
        """The start of the token's SHA-256 checksum: tells rows apart, reveals nothing usable."""
        return f"{token.token_checksum[:CHECKSUM_SHOWN]}…" if token.token_checksum else "—"

    @admin.display(description="client", ordering="application__name")
    def client(self, token: Any) -> str:
        application = token.application
        if application is None:
            return "—"
        return f"{application.name} ({application.client_id})" if application.name else application.client_id

    @admin.display(description="state")
    def state(self, token: Revocable) -> str:
        return "expired" if token_expired(token) else "active"


@admin.register(AccessToken)
class AccessTokenAdmin(TokenAdmin):
    list_display = ("id", "checksum", "user", "client", "scope", "expires", "state", "created")
    fields = (
        "id",
        "checksum",
        "user",
        "client",
        "scope",
        "resource",
        "state",
        "expires",
        "created",
        "updated",
        "source_refresh_token",
        "id_token",
    )


@admin.register(RefreshToken)
class RefreshTokenAdmin(TokenAdmin):
    list_display = ("id", "checksum", "user", "client", "scope", "state", "created", "revoked")
    list_filter = (RefreshTokenStateFilter, "application")
    list_select_related = ("user", "application", "access_token")
    fields = ("id", "checksum", "user", "client", "scope", "state", "token_family", "created", "revoked")

    @admin.display(description="scope")
    def scope(self, token: RefreshToken) -> str:
        access_token = token.access_token
        return access_token.scope if access_token is not None else "—"

    @admin.display(description="state")
    def state(self, token: Revocable) -> str:
        if cast(RefreshToken, token).revoked is not None:
            return "revoked"
        return super().state(token)


@admin.register(IDToken)
class IDTokenAdmin(TokenAdmin):
    list_display = ("jti", "user", "client", "scope", "expires", "state", "created")
    fields = ("jti", "user", "client", "scope", "state", "expires", "created")
    ordering = ("-id",)


@admin.register(Grant)
class GrantAdmin(TokenAdmin):
    """Authorization codes: short-lived and single-use; the code itself is never shown."""

    list_display = ("id", "user", "client", "scope", "redirect_uri", "expires", "state", "created")
    fields = (
        "id",
        "user",
        "client",
        "scope",
        "redirect_uri",
        "code_challenge_method",
        "state",
        "expires",
        "created",
    )


@admin.register(DeviceGrant)
class DeviceGrantAdmin(TokenAdmin):
    """Device authorizations (RFC 8628); the device and user codes are never shown."""

    list_display = ("id", "user", "client_id", "status", "scope", "expires", "last_checked")
    list_filter = (DeviceGrantStateFilter,)
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email", "=client_id")
    fields = ("id", "user", "client_id", "status", "scope", "interval", "expires", "last_checked")
