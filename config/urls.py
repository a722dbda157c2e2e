"""Root URL map: a contract (docs: ../shared/DESIGN.md, "URL map")."""

from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from allauth.headless.constants import Client
from django.contrib import admin
from django.urls import include, path, re_path

from accounts import headless as account_headless
from accounts import views as account_views
from accounts import views_mfa as mfa_views
from accounts import views_organizations as organization_views
from config import health, views

admin.site.site_header = "Identity administration"
admin.site.site_title = "Identity admin"
admin.site.index_title = "Users, clients and settings"
# Staff sign in through the same pages as everyone (second factor, lockout, audit included).
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

# allauth's headless second-factor endpoints with our code check (accounts/headless.py), routed
# ahead of allauth's own at the same paths, and the e-mailed fallback code.
headless_mfa_urlpatterns = [
    pattern
    for client in Client
    for pattern in (
        path(
            f"_allauth/{client.value}/v1/auth/2fa/authenticate",
            account_headless.MFAAuthenticateAPIView.as_api_view(client=client),
        ),
        path(
            f"_allauth/{client.value}/v1/auth/2fa/reauthenticate",
            account_headless.MFAReauthenticateAPIView.as_api_view(client=client),
        ),
        path(
            f"_allauth/{client.value}/v1/auth/webauthn/authenticate",
            account_headless.MFAAuthenticateWebAuthnAPIView.as_api_view(client=client),
        ),
        path(
            f"_allauth/{client.value}/v1/auth/webauthn/reauthenticate",
            account_headless.MFAReauthenticateWebAuthnAPIView.as_api_view(client=client),
        ),
        path(
            f"_allauth/{client.value}/v1/auth/webauthn/login",
            account_headless.MFALoginWebAuthnAPIView.as_api_view(client=client),
        ),
        path(
            f"_allauth/{client.value}/v1/account/authenticators/totp",
            account_headless.MFAManageTOTPAPIView.as_api_view(client=client),
        ),
        path(
            f"_allauth/{client.value}/v1/auth/2fa/email-code",
            account_headless.EmailCodeRequestAPIView.as_api_view(client=client),
            name=f"headless_{client.value}_mfa_email_code",
        ),
    )
]

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    # Account deletion's browser pages (accounts/views.py), beside allauth's.
    path("accounts/deletion/undo/", account_views.deletion_undo, name="account_deletion_undo"),
    path("accounts/deletion/pending/", account_views.deletion_pending, name="account_deletion_pending"),
    # The e-mailed invitation to an organization (accounts/views_organizations.py).
    path(
        "accounts/organizations/invitations/accept/",
        organization_views.invitation_accept_page,
        name="organization_invitation_accept",
    ),
    # The second factor's page with the e-mailed fallback code (accounts/views_mfa.py).
    path("accounts/2fa/authenticate/", mfa_views.MFAAuthenticatePageView.as_view()),
    path("accounts/2fa/email-code/", mfa_views.email_code_request, name="mfa_email_code"),
    path("accounts/", include("allauth.urls")),
    *headless_mfa_urlpatterns,
    path("_allauth/", include("allauth.headless.urls")),
    path("api/v1/", include("config.api.urls")),
    re_path(r"^api/", views.api_not_found),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
]

handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.page_not_found
handler500 = views.server_error
