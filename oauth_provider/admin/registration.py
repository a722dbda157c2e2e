"""Initial access tokens for dynamic client registration in the Django admin.

Admins issue one (its value is shown once, then only its prefix) and revoke them; staff list them
with their state and uses. Both go through oauth_provider/services/registration.py, audited.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from accounts.policies import policy_allows
from oauth_provider.models import InitialAccessToken
from oauth_provider.models.registration import REGISTRABLE_GRANT_TYPES, InitialAccessTokenState
from oauth_provider.services.registration import (
    IssuedInitialAccessToken,
    initial_access_token_default_lifetime,
    initial_access_token_issue,
    initial_access_token_revoke,
    known_scopes,
    registration_default_scopes,
)

ISSUED_TEMPLATE = "admin/oauth_provider/initialaccesstoken/issued.html"
ISSUED_ATTRIBUTE = "_oauth_issued_initial_access_token"


class InitialAccessTokenIssueForm(forms.ModelForm):
    allowed_scopes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Scopes the clients it registers may have; none ticked means OAUTH_REGISTRATION_SCOPES.",
    )
    allowed_grant_types = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        choices=[(grant, grant) for grant in REGISTRABLE_GRANT_TYPES],
        help_text="Never implicit or password. Client credentials gives a machine client access without a "
        "user's consent: tick it only for a party you trust with that.",
    )

    class Meta:
        model = InitialAccessToken
        fields = ("label", "expires_at", "max_uses", "allowed_scopes", "allowed_grant_types")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["allowed_scopes"]).choices = [
            (scope, scope) for scope in known_scopes()
        ]
        self.fields["allowed_scopes"].help_text += f" (now: {' '.join(registration_default_scopes())})"
        self.initial.setdefault("expires_at", timezone.now() + initial_access_token_default_lifetime())
        self.initial["allowed_scopes"] = []
        self.initial["allowed_grant_types"] = ["authorization_code", "refresh_token"]
        self.fields["max_uses"].initial = 1

    def clean_allowed_scopes(self) -> str:
        return " ".join(self.cleaned_data["allowed_scopes"])

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError("Choose an expiry in the future.", code="expiry_in_past")
        return expires_at


class InitialAccessTokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state.value, str(state.label)) for state in InitialAccessTokenState]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in InitialAccessTokenState.values:
            return cast(Any, queryset).in_state(self.value())
        return queryset


@admin.register(InitialAccessToken)
class InitialAccessTokenAdmin(admin.ModelAdmin):
    form = InitialAccessTokenIssueForm
    list_display = ("label", "prefix", "state", "uses_shown", "expires_at", "created_by", "created_at")
    list_filter = (InitialAccessTokenStateFilter,)
    list_select_related = ("created_by",)
    search_fields = ("label", "token_prefix")
    ordering = ("-created_at",)
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ("revoke_selected",)
    view_fields = (
        "label",
        "prefix",
        "state",
        "uses_shown",
        "allowed_scopes_shown",
        "allowed_grant_types",
        "expires_at",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return super().get_fields(request, obj) if obj is None else self.view_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return () if obj is None else self.view_fields

    # --- who may do what ----------------------------------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "oauth_provider.view_initialaccesstoken")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, "oauth_provider.view_initialaccesstoken", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "oauth_provider.add_initialaccesstoken")

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "oauth_provider.revoke_initialaccesstoken")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # issued as they are; revoke one and issue another

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False  # revoked, never deleted: registrations point at them

    # --- writes: the services -----------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        issued = initial_access_token_issue(
            label=data["label"],
            created_by=cast(User, request.user),
            expires_at=data["expires_at"],
            max_uses=data.get("max_uses"),
            allowed_scopes=data["allowed_scopes"].split(),
            allowed_grant_types=data["allowed_grant_types"],
        )
        obj.pk = issued.initial_access_token.pk
        obj.refresh_from_db()
        setattr(request, ISSUED_ATTRIBUTE, issued)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except ValidationError as error:  # the service refused what the form let through: nothing issued
            self.message_user(request, " ".join(error.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued: IssuedInitialAccessToken = getattr(request, ISSUED_ATTRIBUTE)
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": "Initial access token issued: copy it now",
            "subtitle": None,
            "opts": self.opts,
            "original": obj,
            "token": issued.token,
            "registration_endpoint": f"{settings.SITE_URL}{reverse('oauth2_provider:dcr-register')}",
            "media": self.media,
        }
        response = TemplateResponse(request, ISSUED_TEMPLATE, context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected initial access tokens", permissions=["revoke"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[InitialAccessToken]) -> None:
        revoked = 0
        for token in queryset:
            try:
                initial_access_token_revoke(initial_access_token=token, actor=cast(User, request.user))
            except ValidationError:
                continue  # already revoked
            revoked += 1
        self.message_user(request, f"Revoked {revoked} initial access tokens.", messages.SUCCESS)

    # --- columns ------------------------------------------------------------------------------------

    @admin.display(description="token")
    def prefix(self, token: InitialAccessToken) -> str:
        return f"{token.token_prefix}…"

    @admin.display(description="state")
    def state(self, token: InitialAccessToken) -> str:
        return str(token.state.label)

    @admin.display(description="uses")
    def uses_shown(self, token: InitialAccessToken) -> str:
        return (
            f"{token.uses} of {token.max_uses}" if token.max_uses is not None else f"{token.uses} (no limit)"
        )

    @admin.display(description="allowed scopes")
    def allowed_scopes_shown(self, token: InitialAccessToken) -> str:
        return token.allowed_scopes or f"the default: {' '.join(registration_default_scopes())}"
