"""Root URL map: a contract (docs: ../shared/DESIGN.md, "URL map")."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from accounts import views as account_views
from accounts import views_organizations as organization_views
from config import health, views

admin.site.site_header = "Identity administration"
admin.site.site_title = "Identity admin"
admin.site.index_title = "Users, clients and settings"

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
    path("accounts/", include("allauth.urls")),
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
