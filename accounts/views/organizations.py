"""The browser page of an e-mailed invitation to an organization: see it, then accept it."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts.exceptions import InvitationClosed, InvitationRefused
from accounts.models import User
from accounts.services.organizations import (
    TOKEN_MAX_LENGTH,
    invitation_accept,
    invitation_addressed_to,
    invitation_for_token,
)

INVALID_TEMPLATE = "account/organization_invitation_invalid.html"


def _refusal(request: HttpRequest, *, code: str, message: str, status: int) -> HttpResponse:
    return render(request, INVALID_TEMPLATE, {"code": code, "message": message}, status=status)


def _private(response: HttpResponse) -> HttpResponse:
    # The page's URL carries the token: no other site may see it in a Referer header.
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def invitation_accept_page(request: HttpRequest) -> HttpResponse:
    """GET shows the organization and an Accept button; POST accepts. Signing in comes first."""
    source = request.POST if request.method == "POST" else request.GET
    token = source.get("token", "").strip()[:TOKEN_MAX_LENGTH]
    user = cast(User, request.user)
    try:
        if request.method == "POST":
            membership = invitation_accept(token=token, user=user)
            return _private(
                render(request, "account/organization_invitation_done.html", {"membership": membership})
            )
        invitation = invitation_for_token(token=token)
    except ValidationError as error:
        item = error.error_dict["token"][0] if hasattr(error, "error_dict") else error.error_list[0]
        return _private(
            _refusal(request, code=item.code or "invitation_invalid", message=str(item.message), status=400)
        )
    except InvitationRefused as error:
        # 410 for a link no one can use any more; 403 for one this account may not use.
        status = 410 if isinstance(error, InvitationClosed) else 403
        return _private(_refusal(request, code=error.code, message=error.detail, status=status))
    except PermissionDenied:
        return _private(
            _refusal(
                request,
                code="permission_denied",
                message="Your account cannot accept invitations.",
                status=403,
            )
        )
    context: dict[str, Any] = {
        "token": token,
        "invitation": invitation,
        "organization": invitation.organization,
        "addressed_to_user": invitation_addressed_to(invitation=invitation, user=user),
    }
    return _private(render(request, "account/organization_invitation.html", context))
