"""Tokens and signed-in devices of the caller (the users resource is in accounts/api/users.py)."""

from __future__ import annotations

import uuid
from typing import cast

from drf_spectacular.utils import extend_schema
from drf_standardized_errors.openapi_serializers import ErrorResponse401Serializer
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import (
    RevokedCountSerializer,
    SignedInDeviceSerializer,
    TokenPairSerializer,
    TokenRefreshSerializer,
)
from accounts.exceptions import DeviceNotFound
from accounts.models import User
from accounts.selectors.sessions import signed_in_device_list
from accounts.services import (
    device_session_refresh,
    signed_in_device_revoke,
    signed_in_devices_revoke_others,
)
from accounts.tokens import SESSION_CLAIM


class TokenRefreshView(APIView):
    """Exchange a refresh token for a new pair; the old refresh token stops working."""

    authentication_classes: list[type] = []
    permission_classes = [permissions.AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'  # a rejected refresh token is a 401, not a 403

    @extend_schema(
        request=TokenRefreshSerializer,
        responses={200: TokenPairSerializer, 401: ErrorResponse401Serializer},
        summary="Rotate a JWT pair",
        description=(
            "Presenting a refresh token that was already used revokes its whole device session "
            "(401 `token_reused`); a second refresh racing the first within seconds gets 401 "
            "`token_refresh_raced` and leaves the session alone."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = TokenRefreshSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pair = device_session_refresh(refresh_token=serializer.validated_data["refresh_token"])
        return Response(TokenPairSerializer(pair.as_response()).data)


def current_device(request: Request) -> tuple[str | None, str | None]:
    """The caller's device session ID (JWT) and sign-in session key (cookie or session token)."""
    token = request.auth
    device_session_id = token.get(SESSION_CLAIM) if hasattr(token, "get") else None
    session = getattr(request._request, "session", None)
    return device_session_id, getattr(session, "session_key", None)


class SignedInDeviceViewSet(viewsets.ViewSet):
    """The caller's signed-in devices: API clients' device sessions and browser sessions."""

    permission_classes = [permissions.IsAuthenticated]
    lookup_value_regex = "[0-9a-f-]{36}"
    # First-party only: no OAuth scope lists or ends the user's devices (accounts.authentication).
    required_scopes: dict[str, list[str]] = {}

    @extend_schema(responses=SignedInDeviceSerializer(many=True))
    def list(self, request: Request) -> Response:
        device_session_id, session_key = current_device(request)
        devices = signed_in_device_list(
            user=cast(User, request.user),
            current_device_session_id=device_session_id,
            current_session_key=session_key,
        )
        return Response(SignedInDeviceSerializer(devices, many=True).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        try:
            device_id = uuid.UUID(pk)
        except ValueError:
            # The route admits 36 of [0-9a-f-] (36 dashes too): not an ID is no such device.
            raise DeviceNotFound("No such signed-in device.") from None
        signed_in_device_revoke(user=cast(User, request.user), device_id=device_id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=RevokedCountSerializer)
    @action(detail=False, methods=["post"], url_path="revoke-others")
    def revoke_others(self, request: Request) -> Response:
        device_session_id, session_key = current_device(request)
        revoked = signed_in_devices_revoke_others(
            user=cast(User, request.user),
            current_device_session_id=device_session_id,
            current_session_key=session_key,
        )
        return Response({"revoked": revoked})
