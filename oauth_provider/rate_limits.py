"""Rate limits on the authorization server's endpoints that clients call directly (issue 12 item 14,
docs/decisions/0015-oauth-tokens-and-grants.md).

`/o/token/`, `/o/revoke_token/`, `/o/introspect/` and `/o/device-authorization/` are limited per IP
and per client: the client the request names (HTTP Basic credentials, or the body's `client_id`,
oauth_provider.client_authentication), before anyone checks that it is that client. `/o/register/`
(and the RFC 7592 configuration endpoint under it) is limited per IP, and so are the user codes
typed on `/o/device/` (beside the per-user limit of oauth_provider.views.device).

The counters are django-ratelimit's, on the shared cache (Redis), keyed on REMOTE_ADDR as
config.middleware.ClientIPMiddleware resolved it. A middleware decides before sessions, users or
views are touched, so a refused request costs cache round trips and no database query. A cache
that does not answer lets every request through (RATELIMIT_FAIL_OPEN), as the sign-in limits do.
A rate setting left empty turns that limit off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_ratelimit.core import get_usage

from config.views import error_response
from oauth_provider.client_authentication import requested_client_id

TOO_MANY_REQUESTS = "Too many requests. Retry later."
# The defaults of the settings below, for a deployment whose settings module leaves one out.
DEFAULT_RATES = {
    "RATELIMIT_OAUTH_TOKEN": "300/m",
    "RATELIMIT_OAUTH_TOKEN_PER_CLIENT": "600/m",
    "RATELIMIT_OAUTH_REVOKE": "300/m",
    "RATELIMIT_OAUTH_REVOKE_PER_CLIENT": "600/m",
    "RATELIMIT_OAUTH_INTROSPECT": "1200/m",
    "RATELIMIT_OAUTH_INTROSPECT_PER_CLIENT": "2400/m",
    "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION": "60/m",
    "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION_PER_CLIENT": "600/m",
    "RATELIMIT_OAUTH_REGISTER": "30/m",
    "RATELIMIT_DEVICE_USER_CODE_PER_IP": "30/m",
}


@dataclass(frozen=True)
class EndpointLimit:
    """The limits of one endpoint: a counter group, the settings of its rates, the methods counted."""

    group: str
    ip_rate_setting: str
    client_rate_setting: str = ""
    methods: frozenset[str] = frozenset({"POST"})
    # A page people see in a browser: the refusal is the error page rather than JSON.
    page: bool = False


ALL_BUT_OPTIONS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
# The paths are those of the URL map (DESIGN.md), a contract with outside clients.
ENDPOINT_LIMITS: dict[str, EndpointLimit] = {
    "/o/token/": EndpointLimit(
        "oauth_provider.token", "RATELIMIT_OAUTH_TOKEN", "RATELIMIT_OAUTH_TOKEN_PER_CLIENT"
    ),
    "/o/revoke_token/": EndpointLimit(
        "oauth_provider.revoke", "RATELIMIT_OAUTH_REVOKE", "RATELIMIT_OAUTH_REVOKE_PER_CLIENT"
    ),
    "/o/introspect/": EndpointLimit(
        "oauth_provider.introspect", "RATELIMIT_OAUTH_INTROSPECT", "RATELIMIT_OAUTH_INTROSPECT_PER_CLIENT"
    ),
    "/o/device-authorization/": EndpointLimit(
        "oauth_provider.device_authorization",
        "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION",
        "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION_PER_CLIENT",
    ),
    "/o/device/": EndpointLimit(
        "oauth_provider.device_user_code_ip", "RATELIMIT_DEVICE_USER_CODE_PER_IP", page=True
    ),
}
REGISTRATION_PREFIX = "/o/register/"
REGISTRATION_LIMIT = EndpointLimit(
    "oauth_provider.register", "RATELIMIT_OAUTH_REGISTER", methods=ALL_BUT_OPTIONS
)


def endpoint_limit(request: HttpRequest) -> EndpointLimit | None:
    """The limits that apply to this request, or None."""
    path = request.path_info
    limit = REGISTRATION_LIMIT if path.startswith(REGISTRATION_PREFIX) else ENDPOINT_LIMITS.get(path)
    if limit is None or request.method not in limit.methods:
        return None
    return limit


def _rate(setting: str) -> str:
    return str(getattr(settings, setting, DEFAULT_RATES.get(setting, "")) or "")


def retry_after(request: HttpRequest, *, group: str, rate: str, value: str) -> int:
    """Count the request against the budget of `value` in `group`: seconds to wait when over, else 0."""
    if not rate:
        return 0
    usage = get_usage(request, group=group, key=lambda _group, _request: value, rate=rate, increment=True)
    if usage is None or not usage["should_limit"]:
        return 0
    return max(int(usage["time_left"]), 1)


def limited_retry_after(request: HttpRequest, limit: EndpointLimit) -> int:
    """The IP's budget first: a request refused there is not counted against the client it names,
    so a caller over its own limit cannot also spend a client's budget."""
    wait = retry_after(
        request,
        group=f"{limit.group}.ip",
        rate=_rate(limit.ip_rate_setting),
        value=request.META.get("REMOTE_ADDR", ""),
    )
    if wait or not limit.client_rate_setting:
        return wait
    client_id = requested_client_id(request)
    if not client_id:
        return 0
    return retry_after(
        request, group=f"{limit.group}.client", rate=_rate(limit.client_rate_setting), value=client_id
    )


def too_many_requests(request: HttpRequest, limit: EndpointLimit, *, wait: int) -> HttpResponse:
    """A 429 with Retry-After: the project's error body, or its error page on a browser page."""
    headers = {"Retry-After": str(wait)}
    if not limit.page:
        return error_response(
            request, status=429, code="throttled", detail=TOO_MANY_REQUESTS, headers=headers
        )
    # No `user` on the request yet (authentication runs later): the page reads no session.
    response = render(request, "error.html", {"status": 429, "detail": TOO_MANY_REQUESTS}, status=429)
    response["Retry-After"] = headers["Retry-After"]
    return response


class OAuthRateLimitMiddleware:
    """Refuse requests to the OAuth endpoints above their per-IP or per-client limits (429)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = endpoint_limit(request)
        if limit is not None:
            wait = limited_retry_after(request, limit)
            if wait:
                return too_many_requests(request, limit, wait=wait)
        return self.get_response(request)
