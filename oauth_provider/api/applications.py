"""The applications a user authorized: `/api/v1/users/me/applications/`
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions, generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.schema import error_response
from accounts.models import User
from oauth_provider.api.serializers import AuthorizedApplicationSerializer
from oauth_provider.models import Application, Consent
from oauth_provider.models.consents import ConsentQuerySet
from oauth_provider.services.consents import ConsentNotFound, consent_revoke

THIRD_PARTY_REFUSED = error_response(
    "ThirdPartyClientRefused",
    "permission_denied",
    "insufficient_scope",
    "mfa_enrollment_required",
    description=(
        "`permission_denied`: the caller uses an OAuth access token of a third-party application, "
        "which may not see or revoke the user's other applications; `insufficient_scope`: an OAuth "
        "access token without the endpoint's scope; `mfa_enrollment_required`: the caller must set "
        "up a second factor first."
    ),
)


class NotThirdPartyOAuthClient(permissions.BasePermission):
    """Refuse OAuth access tokens of applications that are not trusted first-party clients,
    whatever their scopes: one application must not see or revoke the user's others."""

    message = "An OAuth application cannot see or revoke the applications you authorized."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not isinstance(request.successful_authenticator, OAuth2Authentication):
            return True
        application = getattr(request.auth, "application", None)
        return bool(application is not None and application.skip_authorization)


class MyApplicationListView(generics.ListAPIView[Consent]):
    """The applications the caller authorized, most recently authorized first."""

    serializer_class = AuthorizedApplicationSerializer
    permission_classes = [permissions.IsAuthenticated, NotThirdPartyOAuthClient]
    # An OAuth token needs the scope (accounts.authentication), and a trusted client's (above).
    required_scopes = {"get": ["users:read"]}

    def get_queryset(self) -> ConsentQuerySet:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular inspecting the view
            return Consent.objects.none()
        return Consent.objects.authorized_by(cast(User, self.request.user))

    @extend_schema(
        summary="List the applications you authorized",
        description=(
            "Each OAuth application you consented to (trusted first-party applications included), "
            "with the scopes you consented to and whether it still holds tokens. Page-number "
            "pagination (`page`, `page_size` up to 200). Refused (403) to OAuth access tokens of "
            "third-party applications."
        ),
        responses={200: AuthorizedApplicationSerializer(many=True), 403: THIRD_PARTY_REFUSED},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class MyApplicationDetailView(APIView):
    """One application the caller authorized."""

    permission_classes = [permissions.IsAuthenticated, NotThirdPartyOAuthClient]
    required_scopes = {"delete": ["users:write"]}

    @extend_schema(
        summary="Revoke an application you authorized",
        description=(
            "Ends your consent and revokes every access token, refresh token, ID token and "
            "authorization code the application holds for you, at once. The application must ask "
            "for your consent again. 404 when you have not authorized it. OAuth access "
            "tokens: only a trusted first-party application's, with `users:write`; a third-party "
            "application's is refused (403)."
        ),
        request=None,
        responses={
            204: None,
            403: THIRD_PARTY_REFUSED,
            404: error_response("ApplicationNotAuthorized", "not_found"),
        },
    )
    def delete(self, request: Request, client_id: str) -> Response:
        user = cast(User, request.user)
        application = Application.objects.filter(client_id=client_id).first()
        if application is None:
            raise exceptions.NotFound("You have not authorized this application.")
        try:
            consent_revoke(user=user, application=application)
        except ConsentNotFound as error:
            raise exceptions.NotFound(str(error)) from error
        return Response(status=status.HTTP_204_NO_CONTENT)
