"""Staff tools for users in the Django admin.

The admin asks the policies of accounts/policies.py with the user at hand, exactly as the API does:
a moderator opens every user but changes only plain users, and only admins assign roles, add or
delete users. Every change goes through the services the API calls: the change form through
`user_update_profile` and `user_set_roles`, the add form through `user_create`, and the actions
(accounts/admin/user_actions.py) through the moderation and MFA services. The list filters and the
search are the `UserQuerySet` methods the staff API filters with.

Staff change a user's e-mail address on a page of its own (`user_change_email`;
docs/decisions/0017-staff-email-change.md).

Role changes, e-mail changes, lock-down and MFA reset are step-up actions: the staff member must have
re-authenticated recently, or nothing changes and they are sent to re-authenticate first
(docs/decisions/0012-mfa-and-step-up.md).
"""

from __future__ import annotations

from typing import Any, cast

from allauth.mfa.models import Authenticator
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.admin.user_actions import (
    DEACTIVATE,
    LOCK_DOWN,
    MARK_EMAIL_VERIFIED,
    REACTIVATE,
    RESEND_VERIFICATION,
    RESET_MFA,
    SEND_PASSWORD_RESET,
    SIGN_OUT_EVERYWHERE,
    USER_ACTIONS,
    step_up_missing,
    step_up_redirect,
    user_action_run,
)
from accounts.admin.user_filters import (
    ActiveFilter,
    EmailVerifiedFilter,
    HasMfaFilter,
    JoinedFilter,
    RoleFilter,
    SocialProviderFilter,
)
from accounts.admin.user_inlines import (
    FACTOR_LABELS,
    USER_INLINES,
    inline_show_change_link,
)
from accounts.forms.users import UserChangeForm, UserCreationForm, UserEmailChangeForm
from accounts.models import User, UserQuerySet
from accounts.models.users import MFA_FACTOR_TYPES
from accounts.policies import policy_allows
from accounts.services import user_create, user_update_profile
from accounts.services.moderation import user_change_email, user_set_roles
from accounts.services.users import PROFILE_FIELDS
from audit.admin_changes import AuditedModelAdminMixin
from config.admin_pages import RefusalsShownAdmin, admin_change_url, admin_page, first_rows_headings

# Django's page for staff to set a user's password: staff send a reset link instead.
SET_PASSWORD_PAGE = "auth_user_password_change"  # noqa: S105 (a URL name)
CHANGE_EMAIL_PERMISSION = "accounts.change_user_email"
CHANGE_EMAIL_TEMPLATE = "admin/accounts/user/change_email.html"


class StepUpRequired(Exception):
    """The change form changes roles, and the staff member has not re-authenticated recently."""


class _UserChangesThroughServices(RefusalsShownAdmin, DjangoUserAdmin):
    """Save the change form through the services.

    A base class rather than `UserAdmin.save_model` so that `AuditedModelAdminMixin.save_model`,
    which runs the next `save_model` and then hands the form's before/after values to the audit
    event of the admin change, wraps it.
    """

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor = cast(User, request.user)
        roles_changed = "roles" in form.fields and "roles" in form.changed_data
        if roles_changed and step_up_missing(request):
            raise StepUpRequired  # before any write: the whole save is refused
        profile = {field: form.cleaned_data[field] for field in PROFILE_FIELDS if field in form.changed_data}
        if profile:
            user_update_profile(user=obj, actor=actor, **profile)
        if roles_changed:
            user_set_roles(user=obj, roles=form.cleaned_data["roles"], actor=actor)


@admin.register(User)
class UserAdmin(AuditedModelAdminMixin, _UserChangesThroughServices):
    form = UserChangeForm
    add_form = UserCreationForm
    change_form_template = "admin/accounts/user/change_form.html"
    list_display = (
        "username",
        "email",
        "verified",
        "roles",
        "active",
        "mfa",
        "last_sign_in",
        "joined",
        "timeline",
    )
    list_filter = (
        RoleFilter,
        ActiveFilter,
        EmailVerifiedFilter,
        HasMfaFilter,
        SocialProviderFilter,
        JoinedFilter,
    )
    # Shown for the search box; the search itself is `UserQuerySet.search` (get_search_results).
    search_fields = ("username", "email", "display_name")
    search_help_text = "Part of the username, e-mail address or display name."
    ordering = ("username",)
    # The orderings the API offers, each on an index.
    sortable_by = ("username", "last_sign_in", "joined")
    list_per_page = 100
    list_max_show_all = 100
    show_full_result_count = False  # no second COUNT(*) of the whole table on every page
    show_facets = admin.ShowFacets.NEVER  # facet counts would be one COUNT per filter choice
    filter_horizontal = ()
    inlines = USER_INLINES
    actions = tuple(action.name for action in USER_ACTIONS)
    readonly_fields = (
        "id",
        "email",
        "verified",
        "is_active",
        "deactivation_reason",
        "is_staff",
        "is_superuser",
        "direct_permissions",
        "mfa_factors",
        "local_password",
        "last_login",
        "created_at",
        "updated_at",
        "deleted_at",
        "purged_at",
        "timeline",
    )
    fieldsets = (
        (None, {"fields": ("id", "username", "display_name", "description")}),
        ("E-mail", {"fields": ("email", "verified")}),
        (
            "Access",
            {
                "fields": (
                    "roles",
                    "is_active",
                    "deactivation_reason",
                    "is_staff",
                    "is_superuser",
                    "direct_permissions",
                    "mfa_factors",
                    "local_password",
                ),
                "description": "Deactivate, reactivate or lock down the user, or reset their MFA, with "
                "the actions; staff flags follow the roles. Changing roles, locking down and resetting "
                "MFA ask you to confirm who you are again (password or second factor) first.",
            },
        ),
        ("Dates", {"fields": ("last_login", "created_at", "updated_at", "deleted_at", "purged_at")}),
        ("Audit", {"fields": ("timeline",)}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "password1", "password2")}),
    )

    # --- who may do what: the policies, asked with the user at hand ------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "accounts.list_users")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        if obj is None:
            return policy_allows(request.user, "accounts.list_users")
        return policy_allows(request.user, "accounts.view_user", obj)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, "accounts.change_user", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "accounts.add_user")

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, "accounts.delete_user", obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()  # the add form: username, e-mail and password
        readonly = tuple(super().get_readonly_fields(request, obj))
        if not policy_allows(request.user, "accounts.assign_roles", obj):
            readonly += ("roles",)
        return readonly

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # One at a time from the change page instead: the bulk delete writes no audit event.
        actions.pop("delete_selected", None)
        for action in USER_ACTIONS:
            if not policy_allows(request.user, action.permission):
                actions.pop(action.name, None)
        return actions

    def get_urls(self) -> list[URLPattern]:
        change_email = path(
            "<path:object_id>/change-email/",
            self.admin_site.admin_view(self.change_email_view),
            name="accounts_user_change_email",
        )
        urls = [url for url in super().get_urls() if getattr(url, "name", None) != SET_PASSWORD_PAGE]
        return [change_email, *urls]  # before the catch-all `<path:object_id>/` of the change page

    def may_change_email(self, request: HttpRequest, user: User) -> bool:
        return (
            policy_allows(request.user, CHANGE_EMAIL_PERMISSION, user)
            and user.pk != getattr(request.user, "pk", None)  # their own: the account pages
            and user.purged_at is None
        )

    def get_inlines(self, request: HttpRequest, obj: Model | None) -> Any:
        return self.inlines if obj is not None else ()  # a new user has no records yet

    def get_inline_instances(self, request: HttpRequest, obj: Model | None = None) -> list[Any]:
        inlines = super().get_inline_instances(request, obj)
        for inline in inlines:
            inline_show_change_link(inline, request)
        return inlines

    # --- reads: the staff list's queryset, filters and search -------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return cast(UserQuerySet, super().get_queryset(request)).for_staff_list()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[User], search_term: str
    ) -> tuple[QuerySet[User], bool]:
        return cast(UserQuerySet, queryset).search(search_term), False

    # --- writes: the services ---------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)  # with the values for the audit event
            return
        # Not through the audit mixin: the add form's values include the password.
        user = user_create(
            username=obj.username,
            email=obj.email,
            password=form.cleaned_data["password1"],
            email_verified=False,
        )
        obj.pk = user.pk
        obj.refresh_from_db()

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            # A service's refusal (your own admin role, a race) is a message (RefusalsShownAdmin).
            return super().changeform_view(request, object_id, form_url, extra_context)
        except StepUpRequired:
            # Raised before the first write, inside the view's transaction: nothing changed.
            return step_up_redirect(
                request,
                what="Changing roles",
                retry="make the change again",
                back_to=request.get_full_path(),
            )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> TemplateResponse:
        if obj is not None:
            available = self.get_actions(request)
            context["user_actions"] = [
                action
                for action in USER_ACTIONS
                if action.name in available
                and policy_allows(request.user, action.permission, obj)
                and not (action.already is not None and action.already(obj))
            ]
            context["timeline_url"] = timeline_url(obj)
            if self.may_change_email(request, obj):
                context["change_email_url"] = reverse("admin:accounts_user_change_email", args=[obj.pk])
            first_rows_headings(context)
        response = super().render_change_form(request, context, add, change, form_url, obj)
        return cast(TemplateResponse, response)

    def change_email_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Give the user a new e-mail address: a form, then `user_change_email` (step-up first)."""
        user = self.get_object(request, unquote(object_id))
        if user is None:
            raise Http404("No such user.")
        if not self.may_change_email(request, user):
            raise PermissionDenied
        if step_up_missing(request):  # before the form, so nothing typed is lost
            return step_up_redirect(
                request,
                what="Changing an e-mail address",
                retry="make the change",
                back_to=request.get_full_path(),
            )
        change_url = admin_change_url(self, user.pk)
        form = UserEmailChangeForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                changed = user_change_email(user=user, actor=cast(User, request.user), **form.cleaned_data)
            except ValidationError as error:
                form_errors_add(form, error)
            else:
                how = "verified" if form.cleaned_data["verified"] else "a verification link was sent to it"
                self.message_user(
                    request,
                    f"Changed the e-mail address of {user.username} to {changed.email} ({how}); the old "
                    "address was told.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(change_url)
        return admin_page(
            self,
            request,
            CHANGE_EMAIL_TEMPLATE,
            title=f"Change the e-mail address of {user.username}",
            original=user,
            form=form,
            media=self.media + form.media,
        )

    # --- actions ----------------------------------------------------------------------------------

    @admin.action(description=DEACTIVATE.description)
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, DEACTIVATE)

    @admin.action(description=LOCK_DOWN.description)
    def lock_down_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, LOCK_DOWN)

    @admin.action(description=REACTIVATE.description)
    def reactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, REACTIVATE)

    @admin.action(description=SIGN_OUT_EVERYWHERE.description)
    def sign_out_users_everywhere(
        self, request: HttpRequest, queryset: QuerySet[User]
    ) -> HttpResponse | None:
        return user_action_run(self, request, queryset, SIGN_OUT_EVERYWHERE)

    @admin.action(description=SEND_PASSWORD_RESET.description)
    def send_password_reset(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, SEND_PASSWORD_RESET)

    @admin.action(description=RESEND_VERIFICATION.description)
    def resend_verification(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, RESEND_VERIFICATION)

    @admin.action(description=MARK_EMAIL_VERIFIED.description)
    def mark_email_verified(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, MARK_EMAIL_VERIFIED)

    @admin.action(description=RESET_MFA.description)
    def reset_mfa(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        return user_action_run(self, request, queryset, RESET_MFA)

    # --- columns and read-only fields -------------------------------------------------------------

    @admin.display(description="verified", boolean=True)
    def verified(self, user: User) -> bool | None:
        """The primary e-mail address is verified (annotated by `for_staff_list`)."""
        return getattr(user, "email_verified", None)

    @admin.display(description="roles")
    def roles(self, user: User) -> str:
        return ", ".join(user.roles)

    @admin.display(description="active", boolean=True)
    def active(self, user: User) -> bool:
        return user.is_active

    @admin.display(description="MFA", boolean=True)
    def mfa(self, user: User) -> bool | None:
        """A second factor (TOTP or a passkey) is set up (annotated by `for_staff_list`)."""
        return getattr(user, "has_mfa", None)

    # As the API orders: never signed in counts as oldest, on the (last_login NULLS FIRST, id) index;
    # the admin reverses the expression (DESC NULLS LAST) for "newest first".
    @admin.display(
        description="last sign-in", ordering=F("last_login").asc(nulls_first=True), empty_value="never"
    )
    def last_sign_in(self, user: User) -> Any:
        return user.last_login

    @admin.display(description="joined", ordering="created_at")
    def joined(self, user: User) -> Any:
        return user.created_at

    @admin.display(description="second factors")
    def mfa_factors(self, user: User) -> str:
        types = list(Authenticator.objects.filter(user=user).values_list("type", flat=True))
        factors = [factor for factor in MFA_FACTOR_TYPES if factor in types]
        described = [f"{FACTOR_LABELS[factor]} x{types.count(factor)}" for factor in factors]
        if Authenticator.Type.RECOVERY_CODES in types:
            described.append(FACTOR_LABELS[Authenticator.Type.RECOVERY_CODES])
        return ", ".join(described) or "none"

    @admin.display(description="local password")
    def local_password(self, user: User) -> str:
        if user.has_usable_password():
            return "set (staff cannot see or change it; send a reset link)"
        return "none: signs in through an external provider"

    @admin.display(description="direct permissions")
    def direct_permissions(self, user: User) -> str:
        """Django permissions given to the user outside any role (none, normally)."""
        permissions = user.user_permissions.select_related("content_type").order_by("codename")
        return ", ".join(str(permission) for permission in permissions) or "none"

    @admin.display(description="audit")
    def timeline(self, user: User) -> str:
        """A link to the audit events the user did or that were done to them."""
        return format_html('<a href="{}">Timeline</a>', timeline_url(user))


def form_errors_add(form: Any, error: ValidationError) -> None:
    """A service's refusal on the form: on its field where it names one the form has."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.error_dict.items():
        form.add_error(field if field in form.fields else None, ValidationError(errors))


def timeline_url(user: User) -> str:
    url = reverse("admin:audit_auditevent_changelist")
    return f"{url}?{urlencode({'about_user': str(user.pk)})}"
