"""Staff tools for users in the Django admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.forms import UserChangeForm, UserCreationForm
from accounts.models import User
from audit.admin_changes import AuditedModelAdminMixin
from audit.services import audit_record


@admin.register(User)
class UserAdmin(AuditedModelAdminMixin, DjangoUserAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    list_display = (
        "username",
        "email",
        "display_name",
        "is_active",
        "is_staff",
        "last_login",
        "created_at",
        "timeline",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "is_external_only", "groups")
    search_fields = ("username", "email", "display_name")
    ordering = ("username",)
    readonly_fields = ("id", "last_login", "created_at", "updated_at", "deleted_at", "is_external_only")
    fieldsets = (
        (None, {"fields": ("id", "username", "password")}),
        ("Profile", {"fields": ("display_name", "email", "description")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "created_at", "updated_at", "deleted_at", "is_external_only")}),
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data:
            verb = "reactivated" if obj.is_active else "deactivated"
            audit_record(action=f"accounts.user.{verb}", target=obj, request=request)

    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )

    @admin.display(description="Audit")
    def timeline(self, user: User) -> str:
        """A link to the audit events the user did or that were done to them."""
        url = reverse("admin:audit_auditevent_changelist")
        return format_html('<a href="{}?{}">Timeline</a>', url, urlencode({"about_user": str(user.pk)}))
