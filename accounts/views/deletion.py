"""Browser pages of account deletion: the e-mailed undo link, and the notice shown when someone
signs in with the right password to an account pending deletion."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_safe

from accounts.services.deletion import deletion_purge_after, deletion_undo_token_user, user_cancel_deletion

# Set by AccountAdapter.respond_user_inactive once the password of an account pending deletion
# was right: the notice page shows only to that browser session.
DELETION_PENDING_SESSION_KEY = "accounts_deletion_pending"
TOKEN_MAX_LENGTH = 1024


def _token_error(error: ValidationError) -> tuple[str, str]:
    """The code and message of an undo-token error."""
    item = error.error_dict["token"][0] if hasattr(error, "error_dict") else error.error_list[0]
    return item.code or "undo_link_invalid", str(item.message)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def deletion_undo(request: HttpRequest) -> HttpResponse:
    """GET shows what the link would restore; POST restores it. The token never leaves the page."""
    source = request.POST if request.method == "POST" else request.GET
    token = source.get("token", "").strip()[:TOKEN_MAX_LENGTH]
    try:
        if request.method == "POST":
            user = user_cancel_deletion(token=token)
            request.session.pop(DELETION_PENDING_SESSION_KEY, None)  # nothing is pending any more
            return render(request, "account/deletion_undo_done.html", {"restored_user": user})
        user = deletion_undo_token_user(token=token)
    except ValidationError as error:
        code, message = _token_error(error)
        return render(
            request, "account/deletion_undo_invalid.html", {"code": code, "message": message}, status=400
        )
    context: dict[str, Any] = {
        "token": token,
        "pending_user": user,
        "purge_after": deletion_purge_after(user),
    }
    response = render(request, "account/deletion_undo.html", context)
    response["Referrer-Policy"] = "no-referrer"
    return response


@never_cache
@require_safe
def deletion_pending(request: HttpRequest) -> HttpResponse:
    """After a correct password for an account pending deletion: when it goes, and how to keep it."""
    value = request.session.get(DELETION_PENDING_SESSION_KEY)
    purge_after: datetime | None = parse_datetime(value) if isinstance(value, str) else None
    if purge_after is None:
        return redirect("account_login")
    return render(request, "account/deletion_pending.html", {"purge_after": purge_after})
