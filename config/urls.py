"""Root URL map: a contract (docs: ../shared/DESIGN.md, "URL map")."""

from __future__ import annotations

from typing import Any

from allauth.account.decorators import secure_admin_login
from allauth.headless.constants import Client
from django.contrib import admin
from django.urls import include, path, re_path

from accounts import headless as account_headless
from accounts.views import account as account_views
from accounts.views import deletion as deletion_views
from accounts.views import mfa as mfa_views
from accounts.views import organizations as organization_views
from config import health, views
from oauth_provider.views import applications as oauth_application_views
from oauth_provider.views import authorize as oauth_authorize_views
from oauth_provider.views import metadata as oauth_metadata_views

admin.site.site_header = "Identity administration"
admin.site.site_title = "Identity admin"
admin.site.index_title = "Users, clients and settings"
# Staff sign in through the same pages as everyone (second factor, lockout, audit included).
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

# allauth's headless second-factor endpoints with our code check, its password change with the
# lockout and its sign-up without a timing difference (accounts/headless.py), routed ahead of
# allauth's own at the same paths, and the e-mailed fallback code.
HEADLESS_VIEWS: list[tuple[str, Any, str]] = [  # (path under v1/, view, URL name)
    ("auth/2fa/authenticate", account_headless.MFAAuthenticateAPIView, "mfa_authenticate"),
    ("auth/2fa/reauthenticate", account_headless.MFAReauthenticateAPIView, "mfa_reauthenticate"),
    ("auth/webauthn/authenticate", account_headless.MFAAuthenticateWebAuthnAPIView, "webauthn_authenticate"),
    (
        "auth/webauthn/reauthenticate",
        account_headless.MFAReauthenticateWebAuthnAPIView,
        "webauthn_reauthenticate",
    ),
    ("auth/webauthn/login", account_headless.MFALoginWebAuthnAPIView, "webauthn_login"),
    ("account/authenticators/totp", account_headless.MFAManageTOTPAPIView, "mfa_manage_totp"),
    ("auth/2fa/email-code", account_headless.EmailCodeRequestAPIView, "mfa_email_code"),
    # The password change, its current password counted toward the lockout.
    ("account/password/change", account_headless.ChangePasswordAPIView, "change_password"),
    # The sign-up, as costly for a taken address as for a new one.
    ("auth/signup", account_headless.SignupAPIView, "signup"),
]
headless_urlpatterns = [
    path(
        f"_allauth/{client.value}/v1/{suffix}",
        view.as_api_view(client=client),
        name=f"headless_{client.value}_{name}",
    )
    for client in Client
    for suffix, view, name in HEADLESS_VIEWS
]

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    # Account deletion's browser pages (accounts/views/deletion.py), beside allauth's.
    path("accounts/deletion/undo/", deletion_views.deletion_undo, name="account_deletion_undo"),
    path("accounts/deletion/pending/", deletion_views.deletion_pending, name="account_deletion_pending"),
    # The e-mailed invitation to an organization (accounts/views/organizations.py).
    path(
        "accounts/organizations/invitations/accept/",
        organization_views.invitation_accept_page,
        name="organization_invitation_accept",
    ),
    # The second factor's page with the e-mailed fallback code (accounts/views/mfa.py).
    path("accounts/2fa/authenticate/", mfa_views.MFAAuthenticatePageView.as_view()),
    path("accounts/2fa/email-code/", mfa_views.email_code_request, name="mfa_email_code"),
    # allauth's sign-in page filled from an authorization request's login_hint, and the
    # applications the user authorized (oauth_provider/views/authorize.py,
    # oauth_provider/views/applications.py).
    path("accounts/login/", oauth_authorize_views.LoginHintLoginView.as_view()),
    # allauth's sign-up page, a username lost to a concurrent sign-up answered as a taken one
    # (accounts/views/account.py).
    path("accounts/signup/", account_views.SignupPageView.as_view()),
    path(
        "accounts/applications/",
        oauth_application_views.authorized_applications_page,
        name="oauth_applications",
    ),
    path(
        "accounts/applications/<str:client_id>/revoke/",
        oauth_application_views.authorized_application_revoke,
        name="oauth_application_revoke",
    ),
    path("accounts/", include("allauth.urls")),
    *headless_urlpatterns,
    # allauth routes its phone-number endpoints whether or not phone numbers are used; here they
    # are not (its adapter's get_phone raises NotImplementedError: a 500).
    *(
        path(f"_allauth/{client.value}/v1/{suffix}", views.api_not_found)
        for client in Client
        for suffix in ("account/phone", "auth/phone/verify", "auth/phone/verify/resend")
    ),
    path("_allauth/", include("allauth.headless.urls")),
    path("api/v1/", include("config.api.urls")),
    re_path(r"^api/", views.api_not_found),
    # Discovery at the issuer (the site root), and our API's protected-resource metadata
    # (oauth_provider/views/metadata.py).
    path(
        ".well-known/openid-configuration",
        oauth_metadata_views.OpenIDConfigurationView.as_view(),
        name="oidc-configuration",
    ),
    path(
        ".well-known/oauth-authorization-server",
        oauth_metadata_views.AuthorizationServerMetadataView.as_view(),
        name="oauth-authorization-server-metadata",
    ),
    path(
        ".well-known/oauth-protected-resource",
        oauth_metadata_views.ProtectedResourceMetadataView.as_view(),
        name="oauth-protected-resource-metadata",
    ),
    # The authorization server (oauth_provider/urls.py: the toolkit's endpoints with our rules).
    path("o/", include("oauth_provider.urls")),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]

handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
