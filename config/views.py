"""Site-level views: the landing page and the error answers outside DRF.

Outside DRF views, errors on API paths (or for clients that ask for JSON) get the same body as
the API error handler produces; browsers get the project's HTML error pages.
"""

from __future__ import annotations

import sys
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from config.api.errors import (
    OUTAGE_DETAIL,
    OUTAGE_RETRY_AFTER_SECONDS,
    RATE_LIMIT_RETRY_AFTER_SECONDS,
    request_limit_error,
)
from config.outages import outage_dependency

API_PATH_PREFIXES = ("/api/", "/o/", "/_allauth/", "/.well-known/", "/health/")
# The codes of the statuses whose HTTP reason phrase is not the code the API uses for them.
STATUS_CODES = {
    401: "not_authenticated",
    403: "permission_denied",
    413: "request_too_large",
    429: "throttled",
}


def wants_json(request: HttpRequest) -> bool:
    """Tell whether an error for this request must be JSON rather than an HTML page."""
    if request.path.startswith(API_PATH_PREFIXES):
        return True
    accept = request.headers.get("Accept", "")
    return "json" in accept and "text/html" not in accept


def status_error(status: int) -> tuple[str, str]:
    """The code and detail of an error known only by its status (a third-party answer without body)."""
    if status >= 500:
        return "error", f"Server Error ({status})."
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error", "Error."
    return STATUS_CODES.get(status, phrase.lower().replace(" ", "_").replace("-", "_")), f"{phrase}."


def error_body(*, status: int, code: str, detail: str) -> dict[str, Any]:
    """The one error shape (docs/decisions/0004-errors-logs-and-edge.md) of a single error."""
    error_type = "server_error" if status >= 500 else "client_error"
    return {"type": error_type, "errors": [{"code": code, "detail": detail, "attr": None}]}


def error_response(
    request: HttpRequest,
    *,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    if wants_json(request):
        return JsonResponse(
            error_body(status=status, code=code, detail=detail), status=status, headers=headers
        )
    response = render(request, "error.html", {"status": status, "detail": detail}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@csrf_exempt
def api_not_found(request: HttpRequest) -> HttpResponse:
    return error_response(request, status=404, code="not_found", detail="Not found.")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Django answers a body over its limits (read lazily, by any view or middleware) through here.
    limit_error = request_limit_error(exception)
    if limit_error is not None:
        status, code, detail = limit_error
        return error_response(request, status=status, code=code, detail=detail)
    return error_response(request, status=400, code="bad_request", detail="Bad request.")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_response(
        request, status=403, code="permission_denied", detail="You do not have permission to do this."
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_response(request, status=404, code="not_found", detail="Not found.")


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this while handling the exception: a dependency outage is a 503 to retry.
    if outage_dependency(sys.exc_info()[1]) is None:
        return error_response(request, status=500, code="error", detail="Server Error (500).")
    headers = {"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)}
    if wants_json(request):
        return error_response(
            request, status=503, code="service_unavailable", detail=OUTAGE_DETAIL, headers=headers
        )
    # Without the request: its context (the signed-in user) would need the database that is down.
    page = render_to_string("error.html", {"status": 503, "detail": OUTAGE_DETAIL})
    return HttpResponse(page, status=503, headers=headers)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return error_response(
        request, status=403, code="csrf_failed", detail="CSRF verification failed. Reload the page and retry."
    )


def rate_limited(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_response(
        request,
        status=429,
        code="throttled",
        detail="Too many requests. Retry later.",
        headers={"Retry-After": str(RATE_LIMIT_RETRY_AFTER_SECONDS)},
    )
