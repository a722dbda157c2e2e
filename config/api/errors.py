"""The API error handler: every exception becomes the one error shape (drf-standardized-errors).

Shape: {"type": "validation_error" | "client_error" | "server_error",
        "errors": [{"code": "<machine-readable>", "detail": "<human text>", "attr": "<field or null>"}]}
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django_ratelimit.exceptions import Ratelimited
from drf_standardized_errors.handler import ExceptionHandler
from rest_framework import exceptions
from rest_framework.fields import get_error_detail
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken

from config.outages import outage_dependency, outage_report

# django-ratelimit does not say how long a window has left; a client retrying after this
# many seconds lands in a fresh window for every rate the project uses (per minute or finer).
RATE_LIMIT_RETRY_AFTER_SECONDS = 60

# Django's limits on what it reads of a request body (DATA_UPLOAD_MAX_MEMORY_SIZE and
# DATA_UPLOAD_MAX_NUMBER_FIELDS/FILES), raised lazily wherever the body is first read: the status,
# code and detail they are answered with, in DRF views (below) and everywhere else (handler400).
REQUEST_LIMIT_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    RequestDataTooBig: (413, "request_too_large", "The request body is too large."),
    TooManyFieldsSent: (400, "too_many_fields", "The request has too many fields."),
    TooManyFilesSent: (400, "too_many_files", "The request has too many files."),
}


# A dependency that stopped answering (PostgreSQL restarting, a failover): clients retry after this.
OUTAGE_RETRY_AFTER_SECONDS = 5
OUTAGE_DETAIL = "The service is briefly unavailable. Retry later."


def outage_refusal() -> exceptions.APIException:
    """503 `service_unavailable` with Retry-After: a dependency is down, the request may be retried."""
    refusal = exceptions.APIException(OUTAGE_DETAIL, code="service_unavailable")
    refusal.status_code = 503
    refusal.wait = OUTAGE_RETRY_AFTER_SECONDS  # type: ignore[attr-defined]  # DRF's Retry-After
    return refusal


def request_limit_error(exc: Exception) -> tuple[int, str, str] | None:
    """The (status, code, detail) answering a request-body limit Django raised, else None."""
    for exception_class, answer in REQUEST_LIMIT_ERRORS.items():
        if isinstance(exc, exception_class):
            return answer
    return None


class ApiExceptionHandler(ExceptionHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, Ratelimited):
            return exceptions.Throttled(wait=RATE_LIMIT_RETRY_AFTER_SECONDS)
        if isinstance(exc, InvalidToken):
            # simplejwt explains itself per token class in a nested body; one clear error is enough.
            converted = exceptions.AuthenticationFailed(
                "The access token is invalid, expired or revoked.", code="token_not_valid"
            )
            converted.auth_header = getattr(exc, "auth_header", None)  # type: ignore[attr-defined]
            return converted
        limit_error = request_limit_error(exc)
        if limit_error is not None:
            status, code, detail = limit_error
            refusal = exceptions.APIException(detail, code=code)
            refusal.status_code = status
            return refusal
        if outage_dependency(exc) is not None:
            return outage_refusal()
        if isinstance(exc, DjangoValidationError):
            # Services raise Django's ValidationError; its codes and fields carry over.
            return exceptions.ValidationError(get_error_detail(exc))
        return super().convert_known_exceptions(exc)

    def report_exception(self, exc: exceptions.APIException, response: Response) -> None:
        dependency = outage_dependency(self.exc)
        if dependency is not None:
            # One line per interval for the whole outage, not a traceback per request.
            outage_report(dependency, self.exc)
            return
        super().report_exception(exc, response)
