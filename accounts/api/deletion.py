"""Self-service deletion, undo and personal data export of the caller's account.

`DELETE /api/v1/users/me/` is an action of `UserViewSet` that calls `delete_me`; the rest are
views of their own, routed in config/api/urls.py.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_standardized_errors.openapi_serializers import ErrorResponse401Serializer
from oauth2_provider.models import get_access_token_model
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import step_up_required
from accounts.api.schema import REAUTHENTICATION_REQUIRED_RESPONSE, error_response
from accounts.exceptions import DataExportLinkExpired
from accounts.models import DataExport, User
from accounts.services.deletion import user_cancel_deletion, user_request_deletion
from accounts.services.exports import (
    data_export_download_url,
    data_export_for_download,
    data_export_get,
    data_export_is_downloadable,
    data_export_request,
)


class FirstPartyOnly(exceptions.PermissionDenied):
    default_detail = (
        "Third-party applications cannot do this: sign in to this service itself (its pages or its own apps)."
    )
    default_code = "first_party_only"


def first_party_caller_required(request: Request) -> None:
    """Refuse OAuth access tokens issued to third-party applications, whatever their scopes.

    Deleting the account and exporting all of its data are for the account's owner, signed in to
    this service (a first-party JWT or a browser session); a client the user once granted
    `openid profile` must not be able to do either.
    """
    if isinstance(request.auth, get_access_token_model()):
        raise FirstPartyOnly()


class IsFirstPartyCaller(permissions.BasePermission):
    """`first_party_caller_required` as a DRF permission (403 `first_party_only`)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        first_party_caller_required(request)
        return True


FIRST_PARTY_ONLY_RESPONSE = error_response(
    "FirstPartyOnly", "first_party_only", description="`first_party_only`: an OAuth access token."
)


class DeletionRequestSerializer(serializers.Serializer[Any]):
    purge_after = serializers.DateTimeField(help_text="When the account and its personal data are erased.")


class DeletionUndoSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(
        max_length=1024, trim_whitespace=True, help_text="The `token` of the e-mailed undo link."
    )


class DataExportSerializer(serializers.ModelSerializer[DataExport]):
    status_url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField(
        help_text="Signed link to the JSON bundle while it is ready and not expired; null otherwise."
    )

    class Meta:
        model = DataExport
        fields = (
            "id",
            "status",
            "size",
            "created_at",
            "finished_at",
            "expires_at",
            "status_url",
            "download_url",
        )

    def to_representation(self, instance: DataExport) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if data["status"] == DataExport.Status.READY and not data_export_is_downloadable(export=instance):
            data["status"] = DataExport.Status.EXPIRED  # before the hourly job deletes the file
        return data

    def get_status_url(self, export: DataExport) -> str:
        request = self.context["request"]
        return request.build_absolute_uri(reverse("user-me-export-detail", kwargs={"export_id": export.pk}))

    def get_download_url(self, export: DataExport) -> str | None:
        return data_export_download_url(export=export)


DELETE_ME_SCHEMA = extend_schema(
    request=None,
    responses={
        202: DeletionRequestSerializer,
        401: REAUTHENTICATION_REQUIRED_RESPONSE,
        403: FIRST_PARTY_ONLY_RESPONSE,
    },
    summary="Delete my account",
    description=(
        "Deactivates the account at once and signs it out everywhere (every device session, browser "
        "session and OAuth token). An e-mailed link undoes the deletion until `purge_after` "
        "(`ACCOUNT_DELETION_GRACE_DAYS`, 14 by default); app clients undo it with "
        "`POST /api/v1/users/deletion/undo/`. Then a daily job anonymises the account and erases its "
        "personal data. Refused to third-party OAuth access tokens (403 `first_party_only`), and "
        "without a recent re-authentication (401 `reauthentication_required`)."
    ),
)


def delete_me(request: Request) -> Response:
    """DELETE /api/v1/users/me/ (an action of UserViewSet)."""
    first_party_caller_required(request)
    step_up_required(request)
    deletion = user_request_deletion(user=cast(User, request.user))
    return Response(
        DeletionRequestSerializer({"purge_after": deletion.purge_after}).data, status=status.HTTP_202_ACCEPTED
    )


class DeletionUndoView(APIView):
    """Restore an account pending deletion with the token of its e-mailed undo link."""

    authentication_classes: list[type] = []  # the account is inactive: the token is the credential
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=DeletionUndoSerializer,
        responses={
            204: None,
            400: error_response(
                "DeletionUndoToken",
                "undo_link_invalid",
                "undo_link_expired",
                "undo_link_used",
                "account_deactivated",
                "required",
                "blank",
                "max_length",
                validation=True,
            ),
        },
        summary="Undo my account's deletion",
        description=(
            "For app clients: the body carries the `token` of the undo link e-mailed when the account "
            "was deleted (or when someone signed in to it with its password during the grace period). "
            "Reactivates the account; its sessions stay ended, so the user signs in again. Errors on "
            "`token`: `undo_link_invalid` (tampered, or replaced by a newer deletion request), "
            "`undo_link_expired` (the grace period is over), `undo_link_used`, `account_deactivated` "
            "(an administrator deactivated the account during the grace period)."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = DeletionUndoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_cancel_deletion(token=serializer.validated_data["token"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class DataExportCreateView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsFirstPartyCaller]
    # Declared so that an OAuth token hears why it is refused: `first_party_only`.
    required_scopes = {"post": ["users:read"]}

    @extend_schema(
        request=None,
        responses={
            202: DataExportSerializer,
            401: ErrorResponse401Serializer,
            403: FIRST_PARTY_ONLY_RESPONSE,
            409: error_response("DataExportInProgress", "export_in_progress"),
            429: error_response(
                "DataExportLimit",
                "export_limit_reached",
                description="`export_limit_reached`, with `Retry-After`.",
            ),
        },
        summary="Export my data",
        description=(
            "Starts building a JSON bundle of everything held about the caller: profile, e-mail "
            "addresses, devices, social accounts, OAuth consents, files and their own audit events. "
            "Poll `status_url`; when ready, `download_url` works for `DATA_EXPORT_LINK_HOURS` and "
            "the link is also e-mailed. One export at a time (409), a few a day (429)."
        ),
    )
    def post(self, request: Request) -> Response:
        export = data_export_request(user=cast(User, request.user))
        data = DataExportSerializer(export, context={"request": request}).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["status_url"]})


class DataExportDetailView(APIView):
    permission_classes = [permissions.IsAuthenticated, IsFirstPartyCaller]
    # Declared so that an OAuth token hears why it is refused: `first_party_only`.
    required_scopes = {"get": ["users:read"]}

    @extend_schema(
        responses={
            200: DataExportSerializer,
            401: ErrorResponse401Serializer,
            403: FIRST_PARTY_ONLY_RESPONSE,
            404: error_response("DataExportNotFound", "not_found"),
        },
        summary="Status of my data export",
    )
    def get(self, request: Request, export_id: uuid.UUID) -> Response:
        export = data_export_get(user=cast(User, request.user), export_id=export_id)
        return Response(DataExportSerializer(export, context={"request": request}).data)


class DataExportDownloadView(APIView):
    """The export's file, for whoever holds its signed link (e-mailed, or from the status)."""

    authentication_classes: list[type] = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[OpenApiParameter("token", str, required=True, description="The link's signature.")],
        responses={
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT, description="The JSON bundle."),
            403: error_response("DataExportLinkInvalid", "export_link_invalid"),
            410: error_response("DataExportLinkExpired", "export_link_expired"),
        },
        summary="Download my data export",
    )
    def get(self, request: Request, export_id: uuid.UUID) -> FileResponse:
        export = data_export_for_download(export_id=export_id, token=request.query_params.get("token", ""))
        try:
            content = export.file.open("rb")
        except FileNotFoundError:
            raise DataExportLinkExpired() from None  # the expiry job got there first
        response = FileResponse(
            content,
            as_attachment=True,
            filename=f"data-export-{export.created_at:%Y-%m-%d}.json",
            content_type="application/json",
        )
        response["Cache-Control"] = "private, no-store"
        response["Referrer-Policy"] = "no-referrer"
        return response
