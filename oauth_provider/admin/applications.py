"""OAuth clients in the Django admin: the RFC 7591 metadata, logo, trusted flag, scopes and PKCE.

Staff see every client; only admins add, change or delete one, or rotate its secret
(accounts/policies.py, "OAuth clients"). Every write goes through
oauth_provider/services/applications.py, so the redirect-URI policy (the model's `clean()`, which
the form runs too) and the audit events are the services'. A client secret is stored hashed and
never shown: a new one is shown once, after adding a confidential client or rotating its secret,
which needs a recent re-authentication (issue 6).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from accounts.admin.user_actions import step_up_missing, step_up_redirect
from accounts.models import User
from accounts.policies import policy_allows
from audit.admin_changes import AuditedModelAdminMixin
from config.admin_pages import RefusalsShownAdmin, admin_page
from oauth_provider.models import Application, ClientRegistration
from oauth_provider.services.applications import (
    UPDATABLE_FIELDS,
    IssuedClient,
    application_create,
    application_delete,
    application_rotate_secret,
    application_update,
)
from oauth_provider.services.registration import known_scopes, registration_default_scopes

SECRET_TEMPLATE = "admin/oauth_provider/application/client_secret.html"  # noqa: S105 (a template name)
ROTATE_TEMPLATE = "admin/oauth_provider/application/rotate_secret.html"
# The grants the server offers (RFC 9700: no implicit, no password, no hybrid).
GRANT_CHOICES = [
    (Application.GRANT_AUTHORIZATION_CODE, "Authorization code (with PKCE)"),
    (Application.GRANT_CLIENT_CREDENTIALS, "Client credentials (machine to machine)"),
    (Application.GRANT_DEVICE_CODE, "Device authorization (RFC 8628)"),
]
ISSUED_CLIENT_ATTRIBUTE = "_oauth_issued_client"  # the request attribute from save_model to response_add


def _https_urls(field: Any, **kwargs: Any) -> Any:
    """Form fields of the model's, with URLs read as https when typed without a scheme."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


def _lines(value: str) -> str:
    """A space-separated list, one item per line for a textarea."""
    return "\n".join(value.split())


class ApplicationForm(forms.ModelForm):
    allowed_scopes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Scopes this client may request; none ticked means OAUTH_REGISTRATION_SCOPES, the "
        "default a self-registered client gets.",
    )
    contacts = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="E-mail addresses of the people responsible, one per line.",
    )

    class Meta:
        model = Application
        formfield_callback = _https_urls
        fields = (
            "name",
            "client_type",
            "authorization_grant_type",
            "user",
            "redirect_uris",
            "post_logout_redirect_uris",
            "allowed_origins",
            "skip_authorization",
            "allowed_scopes",
            "require_pkce",
            "client_uri",
            "logo_uri",
            "policy_uri",
            "tos_uri",
            "contacts",
            "software_id",
            "software_version",
        )
        labels = {
            "user": "owner",
            "skip_authorization": "trusted (first-party: no consent page)",
            "require_pkce": "require PKCE",
        }
        help_texts = {
            "redirect_uris": "One per line, matched exactly. https, or http on 127.0.0.1 / [::1] (any port, "
            "RFC 8252) and localhost; a native app's own reverse-domain scheme (com.example.app:/callback).",
            "post_logout_redirect_uris": "Where RP-initiated logout may send the user back; same rules.",
            "allowed_origins": "Browser origins (https) allowed to call the token endpoint, one per line.",
        }
        widgets = {
            "redirect_uris": forms.Textarea(attrs={"rows": 3}),
            "post_logout_redirect_uris": forms.Textarea(attrs={"rows": 2}),
            "allowed_origins": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["allowed_scopes"]).choices = [
            (scope, scope) for scope in known_scopes()
        ]
        self.fields["allowed_scopes"].help_text += f" (now: {' '.join(registration_default_scopes())})"
        if "authorization_grant_type" in self.fields:
            cast(forms.ChoiceField, self.fields["authorization_grant_type"]).choices = GRANT_CHOICES
        instance = self.instance
        self.initial["allowed_scopes"] = instance.allowed_scopes.split()
        self.initial["contacts"] = "\n".join(instance.contacts or [])
        for name in ("redirect_uris", "post_logout_redirect_uris", "allowed_origins"):
            self.initial[name] = _lines(getattr(instance, name))

    def clean_allowed_scopes(self) -> str:
        return " ".join(self.cleaned_data["allowed_scopes"])

    def clean_contacts(self) -> list[str]:
        return str(self.cleaned_data["contacts"]).split()


# The fields `application_create` takes as arguments; the form's other fields go in its `metadata`.
CREATE_ARGUMENTS = frozenset(
    {
        "name",
        "user",
        "client_type",
        "authorization_grant_type",
        "redirect_uris",
        "allowed_scopes",
        "skip_authorization",
        "require_pkce",
    }
)


class _ApplicationChangesThroughServices(RefusalsShownAdmin):
    """Save the forms through the services (below `AuditedModelAdminMixin`, as the user admin does)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor = cast(User, request.user)
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in form.changed_data if name in UPDATABLE_FIELDS}
            application_update(application=obj, changes=changes, actor=actor, via="admin")
            return
        issued = application_create(
            name=data["name"],
            owner=data.get("user"),
            client_type=data["client_type"],
            authorization_grant_type=data["authorization_grant_type"],
            redirect_uris=data.get("redirect_uris", ""),
            allowed_scopes=data.get("allowed_scopes", ""),
            skip_authorization=data.get("skip_authorization", False),
            require_pkce=data.get("require_pkce", True),
            metadata={name: data[name] for name in UPDATABLE_FIELDS - CREATE_ARGUMENTS if name in data},
            actor=actor,
        )
        obj.pk = issued.application.pk
        obj.refresh_from_db()
        setattr(request, ISSUED_CLIENT_ATTRIBUTE, issued)


@admin.register(Application)
class ApplicationAdmin(AuditedModelAdminMixin, _ApplicationChangesThroughServices):
    form = ApplicationForm
    change_form_template = "admin/oauth_provider/application/change_form.html"
    list_display = (
        "name",
        "client_id",
        "client_type",
        "authorization_grant_type",
        "trusted",
        "owner",
        "registration_source",
        "created",
    )
    list_filter = (
        "client_type",
        "authorization_grant_type",
        ("skip_authorization", admin.BooleanFieldListFilter),
        "registration_source",
        "require_pkce",
    )
    list_select_related = ("user",)
    search_fields = ("name", "=client_id", "user__username", "user__email")
    search_help_text = "Part of the name or of the owner's username or e-mail address, or an exact client ID."
    ordering = ("-created",)
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    autocomplete_fields = ("user",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    radio_fields = {"client_type": admin.HORIZONTAL, "authorization_grant_type": admin.VERTICAL}
    readonly_fields = (
        "client_id",
        "client_secret_status",
        "logo_preview",
        "registration_source",
        "registration_summary",
        "created",
        "updated",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Model | None = None) -> Any:
        identity: tuple[str, ...] = ("name", "client_type", "authorization_grant_type", "user")
        if obj is not None:
            identity = ("name", "client_id", "client_secret_status", *identity[1:])
        return (
            (None, {"fields": identity}),
            ("Redirects", {"fields": ("redirect_uris", "post_logout_redirect_uris", "allowed_origins")}),
            (
                "Policy",
                {
                    "fields": ("skip_authorization", "allowed_scopes", "require_pkce"),
                    "description": "A trusted client skips the consent page: mark only first-party "
                    "applications trusted. Public clients always use PKCE.",
                },
            ),
            (
                "Metadata (RFC 7591)",
                {
                    "fields": (
                        "client_uri",
                        "logo_uri",
                        "logo_preview",
                        "policy_uri",
                        "tos_uri",
                        "contacts",
                        "software_id",
                        "software_version",
                    )
                },
            ),
            (
                "Registration",
                {"fields": ("registration_source", "registration_summary", "created", "updated")},
            ),
        )

    # --- who may do what: the policies ----------------------------------------------------------

    def has_module_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "oauth_provider.view_application")

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, "oauth_provider.view_application", obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return policy_allows(request.user, "oauth_provider.add_application")

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, "oauth_provider.change_application", obj)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return policy_allows(request.user, "oauth_provider.delete_application", obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time: each deletion is audited by the service
        return actions

    # --- writes -------------------------------------------------------------------------------------

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        application_delete(application=obj, actor=cast(User, request.user), via="admin")

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        issued: IssuedClient | None = getattr(request, ISSUED_CLIENT_ATTRIBUTE, None)
        if issued is not None and issued.client_secret:
            self.message_user(request, f"Added the client {obj}.", messages.SUCCESS)
            return self._secret_page(request, issued, title="Client added: copy its secret now")
        return super().response_add(request, obj, post_url_continue)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # A service's refusal of what the form let through is a message (RefusalsShownAdmin).
        response = super().changeform_view(request, object_id, form_url, extra_context)
        logo = getattr(response, "context_data", {}).get("original")
        if logo is not None and logo.logo_uri:
            # The preview loads the logo from its own origin, and from that origin only.
            origin = urlsplit(logo.logo_uri)
            response._csp_update = {"img-src": [f"{origin.scheme}://{origin.netloc}"]}  # type: ignore[attr-defined]
        return response

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> TemplateResponse:
        context["can_rotate_secret"] = (
            obj is not None
            and obj.client_type == Application.CLIENT_CONFIDENTIAL
            and policy_allows(request.user, "oauth_provider.rotate_client_secret", obj)
        )
        return cast(
            TemplateResponse, super().render_change_form(request, context, add, change, form_url, obj)
        )

    # --- rotating the secret ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        rotate = path(
            "<path:object_id>/rotate-secret/",
            self.admin_site.admin_view(self.rotate_secret_view),
            name="oauth_provider_application_rotate_secret",
        )
        return [rotate, *super().get_urls()]

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        application = self.get_object(request, object_id)
        if application is None:
            self.message_user(request, "No such client: it may have been deleted.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:oauth_provider_application_changelist"))
        if not policy_allows(request.user, "oauth_provider.rotate_client_secret", application):
            raise PermissionDenied
        change_url = reverse("admin:oauth_provider_application_change", args=[application.pk])
        if application.client_type != Application.CLIENT_CONFIDENTIAL:
            self.message_user(request, "A public client has no secret to rotate.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        if request.method != "POST":
            return self._page(
                request, ROTATE_TEMPLATE, application, title=f"Rotate the secret of {application}?"
            )
        if step_up_missing(request):
            # Before any write: nothing changed.
            return step_up_redirect(
                request,
                what="Rotating a client secret",
                retry="rotate it again",
                back_to=request.get_full_path(),
            )
        issued = application_rotate_secret(application=application, actor=cast(User, request.user))
        return self._secret_page(request, issued, title="Secret rotated: copy the new secret now")

    def _page(
        self, request: HttpRequest, template: str, application: Application, *, title: str, **context: Any
    ) -> TemplateResponse:
        return admin_page(self, request, template, title=title, original=application, **context)

    def _secret_page(self, request: HttpRequest, issued: IssuedClient, *, title: str) -> TemplateResponse:
        response = self._page(
            request, SECRET_TEMPLATE, issued.application, title=title, client_secret=issued.client_secret
        )
        response["Cache-Control"] = "no-store"
        return response

    # --- columns and read-only fields -----------------------------------------------------------

    @admin.display(description="trusted", boolean=True, ordering="skip_authorization")
    def trusted(self, application: Application) -> bool:
        return application.skip_authorization

    @admin.display(description="owner", ordering="user__username", empty_value="—")
    def owner(self, application: Application) -> Any:
        return application.user

    @admin.display(description="client secret")
    def client_secret_status(self, application: Application) -> str:
        if application.client_type != Application.CLIENT_CONFIDENTIAL:
            return "none: a public client proves itself with PKCE"
        return "stored hashed, never shown; rotate it to issue a new one"

    @admin.display(description="logo preview")
    def logo_preview(self, application: Application) -> str:
        if not application.logo_uri:
            return "—"
        return format_html(
            '<img src="{}" alt="Logo of {}" referrerpolicy="no-referrer" '
            'style="max-height:64px;max-width:160px">',
            application.logo_uri,
            application,
        )

    @admin.display(description="registered through")
    def registration_summary(self, application: Application) -> str:
        registration = (
            ClientRegistration.objects.select_related("initial_access_token", "registered_by")
            .filter(application=application)
            .first()
        )
        if registration is None:
            return "the admin or a command (no registration record)"
        if registration.registered_by is not None:
            how = f"dynamic registration by {registration.registered_by}"
        elif registration.initial_access_token is not None:
            how = f"dynamic registration with the initial access token {registration.initial_access_token}"
        else:
            how = "dynamic registration"
        return f"{how}; token endpoint auth method {registration.token_endpoint_auth_method}"
