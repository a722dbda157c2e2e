"""Organizations, their members and invitations in the Django admin.

Permissions follow accounts/policies.py (`has_perm(permission, organization)`), and every change
goes through accounts/services/organizations.py: the same audit events and the same rules as the
API, the last-owner rule included. Invitations are read-only here: their state, never a token.

The change page shows at most MEMBERSHIP_ROWS_SHOWN memberships (owners, then admins, then members,
by username) and the INVITATION_ROWS_SHOWN newest invitations: every row is a set of form fields,
and past about 250 memberships the page could no longer be saved at all (Django refuses a POST
of more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields). Every member, however many, is on the
memberships list (`MembershipAdmin`, linked from the organization's page): searchable, filtered by
organization and role, each membership changed or removed through the same services.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.models import Invitation, Membership, Organization, OrganizationRole, User
from accounts.selectors.organizations import invitation_state, organizations_with_member_count
from accounts.services.organizations import (
    membership_create,
    membership_remove,
    membership_set_role,
    organization_create,
    organization_delete,
    organization_update,
    slug_validator,
)
from config.admin_pages import FirstRowsFormSet, RefusalsShownAdmin, first_rows_headings

# Rows the change page shows; see the module's docstring.
MEMBERSHIP_ROWS_SHOWN = 100
INVITATION_ROWS_SHOWN = 50
ROLE_RANK = Case(
    When(role=OrganizationRole.OWNER, then=Value(0)),
    When(role=OrganizationRole.ADMIN, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # the admin serves signed-in staff only


class ServiceRefusal(ValidationError):
    """A service's PermissionDenied in an admin save (a rule it checks with the data, such as who
    may grant `owner`): shown as a message like its ValidationErrors (`RefusalsShownAdmin`), where
    the admin's own PermissionDenied is a 403 page. The whole save is rolled back."""

    def __init__(self, error: PermissionDenied) -> None:
        super().__init__(str(error) or "You do not have permission to perform this action.")


@contextmanager
def refusals_raised() -> Iterator[None]:
    try:
        yield
    except PermissionDenied as error:
        raise ServiceRefusal(error) from error


def _deleting(formset: Any, form: Any) -> bool:
    return bool(formset.can_delete and form.cleaned_data.get("DELETE", False))


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ("name", "slug", "description")

    def clean_slug(self) -> str:
        slug = str(self.cleaned_data["slug"]).strip().lower()
        slug_validator(slug)
        return slug


class MembershipFormSet(FirstRowsFormSet):
    """The first MEMBERSHIP_ROWS_SHOWN memberships; refuses, as a form error, a change that would
    leave the organization without an owner (counting the owners past the rows shown)."""

    rows_shown = MEMBERSHIP_ROWS_SHOWN
    rows_ordering = (ROLE_RANK, "user__username", "pk")

    def clean(self) -> None:
        super().clean()
        owners = 0
        if self.instance.pk is not None:
            owners = (
                Membership.objects.filter(organization=self.instance, role=OrganizationRole.OWNER)
                .exclude(pk__in=[form.instance.pk for form in self.initial_forms])
                .count()
            )
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or _deleting(self, form):
                continue
            if not form.instance._state.adding and "user" in form.changed_data:
                raise ValidationError(
                    "A membership cannot move to another user: remove it and add a new one.",
                    code="membership_user_changed",
                )
            if (
                form.cleaned_data.get("user") is not None
                and form.cleaned_data.get("role") == OrganizationRole.OWNER
            ):
                owners += 1
        if owners == 0:
            raise ValidationError(
                "An organization needs at least one owner: give a member the owner role.", code="last_owner"
            )


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    rows_heading = (
        "{plural}: the first {shown} of {total}, owners and admins first "
        "(all of them: the members link above)"
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).select_related("user")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_organization", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.add_membership", obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_organization_members", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.manage_organization_members", obj)


class InvitationFormSet(FirstRowsFormSet):
    """The INVITATION_ROWS_SHOWN newest invitations."""

    rows_shown = INVITATION_ROWS_SHOWN
    rows_ordering = ("-created_at", "-pk")


class InvitationInline(admin.TabularInline):
    model = Invitation
    formset = InvitationFormSet
    extra = 0
    can_delete = False
    fields = ("email", "role", "state", "invited_by", "created_at", "expires_at", "accepted_by")
    readonly_fields = fields
    verbose_name_plural = "invitations (managed through the API)"
    rows_heading = "invitations: the newest {shown} of {total} (managed through the API)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invitation]:
        return super().get_queryset(request).select_related("invited_by", "accepted_by")

    @admin.display(description="state")
    def state(self, invitation: Invitation) -> str:
        return invitation_state(invitation).label

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_organization", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(RefusalsShownAdmin):
    form = OrganizationForm
    list_display = ("name", "slug", "member_count", "created_at")
    search_fields = ("name", "slug", "memberships__user__username")
    list_filter = ("created_at",)
    readonly_fields = ("id", "all_members", "created_at", "updated_at")
    fields = ("id", "name", "slug", "description", "all_members", "created_at", "updated_at")
    prepopulated_fields = {"slug": ("name",)}
    inlines = (MembershipInline, InvitationInline)

    @admin.display(description="members")
    def all_members(self, organization: Organization) -> str:
        if organization.pk is None:
            return "-"
        total = getattr(organization, "member_count", None)
        if total is None:
            total = organization.memberships.count()
        return format_html('<a href="{}">All {} members</a>', memberships_url(organization), total)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return organizations_with_member_count(super().get_queryset(request))

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        first_rows_headings(context)
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="members", ordering="member_count")
    def member_count(self, organization: Organization) -> int:
        return int(getattr(organization, "member_count", 0))

    # --- permissions: the policies ---------------------------------------------------------------

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_organization", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Creating one here means choosing its members, which only site admins do without invitations.
        return request.user.has_perm("accounts.add_organization") and request.user.has_perm(
            "accounts.add_membership"
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.change_organization", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.delete_organization", obj)

    # --- writes: the services ------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Organization, form: Any, change: bool) -> None:
        with refusals_raised():
            self._save_model(request, obj, form, change)

    def _save_model(self, request: HttpRequest, obj: Organization, form: Any, change: bool) -> None:
        if change:
            organization_update(
                organization=obj,
                actor=_user(request),
                **{field: form.cleaned_data[field] for field in form.changed_data},
            )
        # A new organization is created in save_related, once its first owner (an inline row) is known.

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        with refusals_raised():
            if not change:
                self._create(request, form, formsets)
            for formset in formsets:
                self.save_formset(request, form, formset, change=change)

    def _create(self, request: HttpRequest, form: Any, formsets: Any) -> None:
        membership_formset = next(formset for formset in formsets if formset.model is Membership)
        owner_form = next(
            row
            for row in membership_formset.extra_forms
            if row.has_changed()
            and not _deleting(membership_formset, row)
            and row.cleaned_data.get("role") == OrganizationRole.OWNER
        )
        created = organization_create(
            actor=_user(request),
            owner=owner_form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            slug=form.cleaned_data["slug"],
            description=form.cleaned_data["description"],
        )
        obj = form.instance
        obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
        obj._state.adding = False
        obj._state.db = created._state.db
        membership_formset.created_owner_form = owner_form

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is not Membership:
            return  # invitations are read-only here
        actor = _user(request)
        organization = form.instance
        skipped = getattr(formset, "created_owner_form", None)
        for row in formset.extra_forms:
            if row is skipped or not row.has_changed() or _deleting(formset, row):
                continue
            formset.new_objects.append(
                membership_create(
                    organization=organization,
                    user=row.cleaned_data["user"],
                    role=row.cleaned_data["role"],
                    actor=actor,
                )
            )
        if skipped is not None:
            formset.new_objects.insert(
                0, Membership.objects.get(organization=organization, user=skipped.cleaned_data["user"])
            )
        # Promotions to owner first, so that handing over ownership in one save never trips the
        # last-owner rule halfway.
        role_changes = sorted(
            (
                row
                for row in formset.initial_forms
                if "role" in row.changed_data and not _deleting(formset, row)
            ),
            key=lambda row: row.cleaned_data["role"] != OrganizationRole.OWNER,
        )
        for row in role_changes:
            membership = membership_set_role(
                membership=row.instance, role=row.cleaned_data["role"], actor=actor
            )
            formset.changed_objects.append((membership, ["role"]))
        for row in formset.deleted_forms:
            if row.instance._state.adding:
                continue
            membership_remove(membership=row.instance, actor=actor)
            formset.deleted_objects.append(row.instance)

    def delete_model(self, request: HttpRequest, obj: Organization) -> None:
        organization_delete(organization=obj, actor=_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        with transaction.atomic():
            for organization in queryset:
                organization_delete(organization=organization, actor=_user(request))


def memberships_url(organization: Organization) -> str:
    url = reverse("admin:accounts_membership_changelist")
    return f"{url}?{urlencode({OrganizationFilter.parameter_name: str(organization.pk)})}"


class OrganizationFilter(admin.SimpleListFilter):
    """One organization's members (`?organization=<id>`, as the organization's page links); the
    sidebar offers the chosen one only, not a list of every organization."""

    title = "organization"
    parameter_name = "organization"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        # A filter without choices is not applied at all: an unknown ID gets one, and no rows.
        value = self.value()
        if not value:
            return []
        organization = self._chosen()
        return [(value, organization.name if organization is not None else "no such organization")]

    def _chosen(self) -> Organization | None:
        value = self.value()
        if not value:
            return None
        try:
            return Organization.objects.filter(pk=value).first()
        except ValidationError:  # not a UUID
            return None

    def queryset(self, request: Any, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        organization = self._chosen()
        return queryset.filter(organization=organization) if organization is not None else queryset.none()


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("organization", "user", "role")


@admin.register(Membership)
class MembershipAdmin(RefusalsShownAdmin):
    """Every membership, for organizations too large for their page's inline: the same policies
    and services as the inline and the API (a role change, a removal, the last-owner rule)."""

    form = MembershipForm
    list_display = ("user", "organization", "role", "created_at")
    list_filter = (OrganizationFilter, "role")
    list_select_related = ("user", "organization")
    search_fields = ("user__username", "user__email", "organization__slug")
    search_help_text = "Part of the member's username or e-mail address, or the organization's slug."
    autocomplete_fields = ("organization", "user")
    ordering = ("organization__name", "user__username")
    show_full_result_count = False
    list_per_page = 100

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (
            ("organization", "user", "role", "created_at")
            if obj is not None
            else ("organization", "user", "role")
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("organization", "user", "created_at") if obj is not None else ()

    # --- permissions: the policies, with the membership standing for its organization ------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.view_organization")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_organization", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.add_membership")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return request.user.has_perm("accounts.view_organization")  # the list; each row asks again
        return request.user.has_perm("accounts.change_membership", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return request.user.has_perm("accounts.add_membership")  # bulk removal: site admins
        return request.user.has_perm("accounts.delete_membership", obj)

    # --- writes: the services --------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        with refusals_raised():
            if change:
                if "role" in form.changed_data:
                    membership_set_role(membership=obj, role=form.cleaned_data["role"], actor=_user(request))
                return
            created = membership_create(
                organization=form.cleaned_data["organization"],
                user=form.cleaned_data["user"],
                role=form.cleaned_data["role"],
                actor=_user(request),
            )
            obj.pk, obj.created_at = created.pk, created.created_at
            obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        with refusals_raised():
            membership_remove(membership=obj, actor=_user(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        with refusals_raised(), transaction.atomic():  # all of them, or none
            for membership in queryset.select_related("organization"):
                membership_remove(membership=membership, actor=_user(request))
