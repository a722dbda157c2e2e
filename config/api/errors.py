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

from accounts.exceptions import (
    AccountsError,
    DataExportInProgress,
    DataExportLinkExpired,
    DataExportLinkInvalid,
    DataExportNotFound,
    InvitationClosed,
    InvitationEmailMismatch,
    InvitationEmailUnverified,
    MFAEnrollmentRequired,
    RateLimited,
    ReauthenticationRequired,
    RefreshTokenRejected,
)
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


# The status each refusal of the services is answered with: the one place that knows it. The
# refusal's own code and detail go into the error shape; the nearest class listed in its MRO wins.
SERVICE_ERROR_STATUS: dict[type[AccountsError], int] = {
    RefreshTokenRejected: 401,  # with the view's WWW-Authenticate challenge (RFC 9110 §15.5.2)
    ReauthenticationRequired: 401,  # with RFC 9470's step-up challenge
    MFAEnrollmentRequired: 403,
    DataExportLinkInvalid: 403,
    InvitationEmailMismatch: 403,
    InvitationEmailUnverified: 403,
    DataExportNotFound: 404,
    DataExportInProgress: 409,
    DataExportLinkExpired: 410,
    InvitationClosed: 410,  # expired, withdrawn or already accepted
    RateLimited: 429,  # with Retry-After
}


def service_error_status(refusal_class: type[AccountsError]) -> int | None:
    """The status `SERVICE_ERROR_STATUS` gives a service's refusal, None for a class it lacks."""
    for exception_class in refusal_class.__mro__:
        if exception_class in SERVICE_ERROR_STATUS:
            return SERVICE_ERROR_STATUS[exception_class]
    return None


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
        if isinstance(exc, AccountsError):
            converted = self.convert_service_error(exc)
            if converted is not None:
                return converted
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

    def convert_service_error(self, exc: AccountsError) -> exceptions.APIException | None:
        """The DRF exception answering a service's refusal; None leaves it a 500 (a class the
        table lacks is a bug, not the client's error)."""
        status = service_error_status(type(exc))
        if status is None:
            return None
        refusal = (
            exceptions.Throttled(wait=exc.retry_after, detail=exc.detail, code=exc.code)
            if isinstance(exc, RateLimited)
            else exceptions.APIException(exc.detail, code=exc.code)
        )
        refusal.status_code = status
        if status == 401:
            # RFC 9110 §15.5.2: a 401 carries a challenge, the refusal's own or else the view's; a
            # view without one answers 403, as DRF's APIView.handle_exception does for its own
            # AuthenticationFailed (it ran before this handler, and only for DRF's classes).
            challenge = self.step_up_challenge(exc) or self.view_challenge()
            if challenge:
                refusal.auth_header = challenge  # type: ignore[attr-defined]
            else:
                refusal.status_code = 403
        return refusal

    @staticmethod
    def step_up_challenge(exc: AccountsError) -> str | None:
        if not isinstance(exc, ReauthenticationRequired):
            return None
        # RFC 9470 §3: the resource server's step-up challenge.
        return (
            'Bearer error="insufficient_user_authentication", '
            'error_description="A more recent authentication is required", '
            f'max_age="{exc.max_age}"'
        )

    def view_challenge(self) -> str | None:
        view, request = self.context.get("view"), self.context.get("request")
        if view is None or request is None:
            return None
        return view.get_authenticate_header(request)

    def report_exception(self, exc: exceptions.APIException, response: Response) -> None:
        dependency = outage_dependency(self.exc)
        if dependency is not None:
            # One line per interval for the whole outage, not a traceback per request.
            outage_report(dependency, self.exc)
            return
        super().report_exception(exc, response)
