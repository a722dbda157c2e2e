"""Site-level views: the landing page and the error answers outside DRF.

Outside DRF views, errors on API paths (or for clients that ask for JSON) get the same body as
the API error handler produces; browsers get the project's HTML error pages.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from config.api.errors import RATE_LIMIT_RETRY_AFTER_SECONDS

API_PATH_PREFIXES = ("/api/", "/o/", "/_allauth/", "/.well-known/", "/health/")


def wants_json(request: HttpRequest) -> bool:
    """Tell whether an error for this request must be JSON rather than an HTML page."""
    if request.path.startswith(API_PATH_PREFIXES):
        return True
    accept = request.headers.get("Accept", "")
    return "json" in accept and "text/html" not in accept


def error_response(
    request: HttpRequest,
    *,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    if wants_json(request):
        error_type = "server_error" if status >= 500 else "client_error"
        body = {"type": error_type, "errors": [{"code": code, "detail": detail, "attr": None}]}
        return JsonResponse(body, status=status, headers=headers)
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
    return error_response(request, status=400, code="bad_request", detail="Bad request.")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_response(
        request, status=403, code="permission_denied", detail="You do not have permission to do this."
    )


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return error_response(request, status=404, code="not_found", detail="Not found.")


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(request, status=500, code="error", detail="Server Error (500).")


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
