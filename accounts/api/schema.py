"""OpenAPI descriptions of error bodies that drf-standardized-errors cannot infer (409, 410, named codes).

Every error body has the one shape of config/api/errors.py:
{"type": "...", "errors": [{"code": "...", "detail": "...", "attr": "... or null"}]}.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from drf_standardized_errors.openapi_serializers import ClientErrorEnum, ValidationErrorEnum
from rest_framework import serializers


def error_response(
    name: str, *codes: str, validation: bool = False, description: str = ""
) -> OpenApiResponse:
    """A documented error response named `name`, whose `code` is one of `codes`."""
    listed = ", ".join(f"`{code}`" for code in codes)
    item = inline_serializer(
        name=f"{name}Error",
        fields={
            "code": serializers.CharField(help_text=f"One of {listed}."),
            "detail": serializers.CharField(),
            "attr": serializers.CharField(allow_null=True),
        },
        many=True,
    )
    body = inline_serializer(
        name=f"{name}Response",
        fields={
            "type": serializers.ChoiceField(
                choices=ValidationErrorEnum.choices if validation else ClientErrorEnum.choices
            ),
            "errors": item,
        },
    )
    return OpenApiResponse(body, description=description or listed)


REAUTHENTICATION_REQUIRED_RESPONSE = error_response(
    "ReauthenticationRequired",
    "not_authenticated",
    "authentication_failed",
    "token_not_valid",
    "reauthentication_required",
    description=(
        "Not signed in, a bad token, or (`reauthentication_required`) a sensitive action without a "
        "recent re-authentication: the `WWW-Authenticate` header carries RFC 9470's "
        '`error="insufficient_user_authentication"` and `max_age`; re-authenticate and retry.'
    ),
)
