"""The brute-force gate in front of sign-in, sign-up, password reset, verification and token refresh.

It only decides whether a POST may reach its view: per-IP limits (django-ratelimit on the shared
cache, keyed on REMOTE_ADDR as resolved by config.middleware.ClientIPMiddleware) and, on sign-in,
the account lockout kept by accounts.lockout. Refusals are 429s in the common error shape with
Retry-After (docs/decisions/0006-brute-force-protection.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django_ratelimit.core import get_usage

from accounts.lockout import (
    lockout_seconds_remaining_for_identifier,
    lockout_seconds_remaining_for_session,
    sign_in_identifier,
)
from accounts.services import session_store
from config.views import error_response

HEADLESS_CLIENTS = ("browser", "app")


@dataclass(frozen=True)
class ProtectedFlow:
    """A group of endpoints that share one per-IP limit, read from the setting `rate_setting`."""

    group: str
    rate_setting: str
    # Sign-in: the body fields that name the account, exactly those its view authenticates with
    # (any other field would let a caller pass the gate with one name and sign in with another).
    identifier_fields: tuple[str, ...] = ()
    # allauth's headless views read the body as JSON whatever its Content-Type says.
    json_body: bool = False
    # For a browser page that serves several actions from one URL: the POST field of the action.
    action_field: str = ""
    # A second factor or a re-authentication: the account is the one the sign-in session acts for
    # (its pending sign-in, or its signed-in user), and a locked account is refused.
    session_account: bool = False
    # allauth's own limits on the flow (ACCOUNT_RATE_LIMITS): their 429 gets a Retry-After here.
    allauth_actions: tuple[str, ...] = ()


SIGN_IN_PAGE = ProtectedFlow("accounts.sign_in", "RATELIMIT_SIGNIN", identifier_fields=("login",))
SIGN_IN_HEADLESS = ProtectedFlow(
    "accounts.sign_in", "RATELIMIT_SIGNIN", identifier_fields=("email", "username"), json_body=True
)
# The second factor of a sign-in, and re-authentication before a sensitive action, share its
# per-IP budget (allauth's own per-user limit on codes is off, see the decision record); their
# account is the session's, and its lockout applies (failed codes count toward it).
SIGN_IN_SECOND_FACTOR = ProtectedFlow("accounts.sign_in", "RATELIMIT_SIGNIN", session_account=True)
SIGN_IN_PASSKEY = ProtectedFlow("accounts.sign_in", "RATELIMIT_SIGNIN")
# A password change checks the current password like a sign-in: refused while the account is locked.
PASSWORD_CHANGE = ProtectedFlow(
    "accounts.sign_in", "RATELIMIT_SIGNIN", session_account=True, allauth_actions=("change_password",)
)
SIGN_UP = ProtectedFlow("accounts.sign_up", "RATELIMIT_SIGNUP", allauth_actions=("signup",))
PASSWORD_RESET = ProtectedFlow(
    "accounts.password_reset", "RATELIMIT_PASSWORD_RESET", allauth_actions=("reset_password",)
)
VERIFICATION_RESEND = ProtectedFlow(
    "accounts.verification_resend", "RATELIMIT_VERIFICATION_RESEND", allauth_actions=("confirm_email",)
)
VERIFICATION_RESEND_PAGE = ProtectedFlow(
    "accounts.verification_resend",
    "RATELIMIT_VERIFICATION_RESEND",
    action_field="action_send",
    allauth_actions=("confirm_email",),
)
TOKEN_REFRESH = ProtectedFlow("accounts.token_refresh", "RATELIMIT_TOKEN_REFRESH")

PROTECTED_PATHS: dict[str, ProtectedFlow] = {
    # Browser pages (allauth) and the Django admin.
    "/accounts/login/": SIGN_IN_PAGE,
    "/accounts/2fa/authenticate/": SIGN_IN_SECOND_FACTOR,
    "/accounts/2fa/reauthenticate/": SIGN_IN_SECOND_FACTOR,
    "/accounts/2fa/webauthn/reauthenticate/": SIGN_IN_SECOND_FACTOR,
    "/accounts/2fa/webauthn/login/": SIGN_IN_PASSKEY,
    "/accounts/reauthenticate/": SIGN_IN_SECOND_FACTOR,
    "/accounts/password/change/": PASSWORD_CHANGE,
    "/accounts/signup/": SIGN_UP,
    "/accounts/password/reset/": PASSWORD_RESET,
    "/accounts/email/": VERIFICATION_RESEND_PAGE,
    # First-party API.
    "/api/v1/auth/token/refresh/": TOKEN_REFRESH,
    "/_allauth/app/v1/tokens/refresh": TOKEN_REFRESH,
}
for _client in HEADLESS_CLIENTS:
    PROTECTED_PATHS |= {
        f"/_allauth/{_client}/v1/auth/login": SIGN_IN_HEADLESS,
        f"/_allauth/{_client}/v1/auth/2fa/authenticate": SIGN_IN_SECOND_FACTOR,
        f"/_allauth/{_client}/v1/auth/2fa/reauthenticate": SIGN_IN_SECOND_FACTOR,
        f"/_allauth/{_client}/v1/auth/reauthenticate": SIGN_IN_SECOND_FACTOR,
        f"/_allauth/{_client}/v1/auth/webauthn/authenticate": SIGN_IN_SECOND_FACTOR,
        f"/_allauth/{_client}/v1/auth/webauthn/reauthenticate": SIGN_IN_SECOND_FACTOR,
        # Passkey sign-in names its account only in the signed assertion: the per-IP limit applies.
        f"/_allauth/{_client}/v1/auth/webauthn/login": SIGN_IN_PASSKEY,
        f"/_allauth/{_client}/v1/account/password/change": PASSWORD_CHANGE,
        f"/_allauth/{_client}/v1/auth/signup": SIGN_UP,
        f"/_allauth/{_client}/v1/auth/password/request": PASSWORD_RESET,
        f"/_allauth/{_client}/v1/auth/email/verify/resend": VERIFICATION_RESEND,
    }


def request_values(request: HttpRequest, *, json_body: bool) -> Mapping[str, Any]:
    """The fields of the request body as the view will read them; empty when it has none."""
    if not json_body:
        return request.POST
    try:
        values = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return values if isinstance(values, dict) else {}


def allauth_retry_after(actions: tuple[str, ...]) -> int:
    """Seconds after which every request allauth's own limits on `actions` counted has left their
    windows: the longest window. Its 429 does not say when to come back (RFC 6585 §4 allows
    Retry-After; DESIGN.md asks for it on every 429)."""
    from allauth.account import app_settings as account_settings
    from allauth.core.internal.ratelimit import parse_rates

    windows = [
        rate.duration for action in actions for rate in parse_rates(account_settings.RATE_LIMITS.get(action))
    ]
    return math.ceil(max(windows, default=0))


def too_many_requests(request: HttpRequest, *, detail: str, retry_after: int) -> HttpResponse:
    """A 429 in the project's one error shape: JSON for API paths, the error page for browsers."""
    return error_response(
        request,
        status=429,
        code="throttled",
        detail=detail,
        headers={"Retry-After": str(max(retry_after, 1))},
    )


class SignInProtectionMiddleware:
    """Refuse POSTs to the protected flows over their per-IP limit, and sign-ins to locked accounts.

    Sits right after SessionMiddleware: before CSRF and authentication, so refused requests cost
    no more than a cache round trip and an indexed lookup of the account.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        flow = PROTECTED_PATHS.get(request.path_info) if request.method == "POST" else None
        if flow is None:
            return self.get_response(request)
        if flow.action_field and flow.action_field not in request_values(request, json_body=flow.json_body):
            return self.get_response(request)
        retry_after = self.ip_limit_retry_after(request, flow)
        if retry_after:
            return too_many_requests(
                request, detail="Too many requests. Retry later.", retry_after=retry_after
            )
        if flow.identifier_fields:
            values = request_values(request, json_body=flow.json_body)
            identifier = sign_in_identifier(values, fields=flow.identifier_fields)
            retry_after = lockout_seconds_remaining_for_identifier(identifier=identifier) if identifier else 0
            if retry_after:
                # The same answer for a locked account and an identifier that matches no account.
                return too_many_requests(
                    request, detail="Too many failed sign-in attempts. Retry later.", retry_after=retry_after
                )
        if flow.session_account:
            retry_after = lockout_seconds_remaining_for_session(session=self.sign_in_session(request))
            if retry_after:
                return too_many_requests(
                    request, detail="Too many failed sign-in attempts. Retry later.", retry_after=retry_after
                )
        response = self.get_response(request)
        if response.status_code == 429 and not response.has_header("Retry-After") and flow.allauth_actions:
            retry_after = allauth_retry_after(flow.allauth_actions)
            if retry_after:
                response["Retry-After"] = str(retry_after)
        return response

    @staticmethod
    def sign_in_session(request: HttpRequest) -> Any:
        """The sign-in session of the request: an app's session token, or the browser's cookie."""
        token = request.headers.get("X-Session-Token", "")
        if token and request.path_info.startswith("/_allauth/app/"):
            return session_store(token)
        return getattr(request, "session", None)

    def ip_limit_retry_after(self, request: HttpRequest, flow: ProtectedFlow) -> int:
        """Count this request against its IP's budget; the seconds to wait when it is over, else 0."""
        rate = getattr(settings, flow.rate_setting, None)
        if not rate:
            return 0
        # A cache outage reads as an empty counter (DJANGO_REDIS_IGNORE_EXCEPTIONS): the limit opens
        # and sign-in keeps working; the lockout still works from the database.
        usage = get_usage(request, group=flow.group, key="ip", rate=rate, increment=True)
        if usage is None or not usage["should_limit"]:
            return 0
        return max(int(usage["time_left"]), 1)
