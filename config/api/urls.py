"""The one API router: every resource of /api/v1/ is registered here."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from accounts.api.deletion import (
    DataExportCreateView,
    DataExportDetailView,
    DataExportDownloadView,
    DeletionUndoView,
)
from accounts.api.organizations import InvitationViewSet, MembershipViewSet, OrganizationViewSet
from accounts.api.users import UserViewSet
from accounts.api.views import SignedInDeviceViewSet, TokenRefreshView
from audit.api.views import AuditEventViewSet, MyAuditEventListView
from config.views import api_not_found
from oauth_provider.api.applications import MyApplicationDetailView, MyApplicationListView

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
# JSON only: no `users/me.json` twins of every route (the viewsets' actions take no `format`).
router.include_format_suffixes = False
router.register("users", UserViewSet, basename="user")
router.register("sessions", SignedInDeviceViewSet, basename="session")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("organizations", OrganizationViewSet, basename="organization")
router.register(
    r"organizations/(?P<organization_id>[0-9a-f-]{36})/members",
    MembershipViewSet,
    basename="organization-member",
)
router.register(
    r"organizations/(?P<organization_id>[0-9a-f-]{36})/invitations",
    InvitationViewSet,
    basename="organization-invitation",
)

urlpatterns = [
    # Before the router, whose users/{id}/ would not match it anyway: the caller's own trail.
    path("users/me/audit-events/", MyAuditEventListView.as_view(), name="user-me-audit-events"),
    # The OAuth applications the caller authorized (oauth_provider/api/applications.py).
    path("users/me/applications/", MyApplicationListView.as_view(), name="user-me-applications"),
    path(
        "users/me/applications/<str:client_id>/",
        MyApplicationDetailView.as_view(),
        name="user-me-application-detail",
    ),
    # Account deletion's undo for app clients, and personal data exports (accounts/api/deletion.py).
    path("users/deletion/undo/", DeletionUndoView.as_view(), name="user-deletion-undo"),
    path("users/me/export/", DataExportCreateView.as_view(), name="user-me-export"),
    path("users/me/export/<uuid:export_id>/", DataExportDetailView.as_view(), name="user-me-export-detail"),
    path(
        "users/me/export/<uuid:export_id>/download/",
        DataExportDownloadView.as_view(),
        name="user-me-export-download",
    ),
    path("", include(router.urls)),
    path("auth/token/refresh/", TokenRefreshView.as_view(), name="token-refresh"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # Anything else under /api/ is a 404 in the error shape, in every mode (DEBUG included).
    re_path(r"^.*$", api_not_found),
]
