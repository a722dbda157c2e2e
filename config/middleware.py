"""Cross-cutting HTTP middleware: the real client IP and the request ID."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

from config.context import request_id_var

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A sane incoming request ID: short, printable, no spaces or separators that could forge log lines.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
REQUEST_ID_HEADER = "X-Request-ID"


class ClientIPMiddleware:
    """Set REMOTE_ADDR to the client's address, believing X-Forwarded-For only from trusted proxies.

    Walking the header from the right, each hop added by a trusted proxy is skipped; the first
    address that is not a trusted proxy is the client. Everything downstream (rate limits, device
    sessions, audit) then reads REMOTE_ADDR and cannot be fooled by a forged header.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    @cached_property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in settings.TRUSTED_PROXIES)

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted_networks)

    def client_ip(self, request: HttpRequest) -> str:
        peer = request.META.get("REMOTE_ADDR", "")
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if not forwarded or not self.is_trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a malformed hop: trust nothing beyond the proxy we know
            if not self.is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.META["REMOTE_ADDR"] = self.client_ip(request)
        return self.get_response(request)


def forget_request_id(**kwargs: object) -> None:
    request_id_var.set("-")


class RequestIDMiddleware:
    """Give every request an ID: keep a sane incoming X-Request-ID, else make one; echo it back.

    The ID stays set until the request is finished, because Django logs error responses
    after the middleware chain has returned.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        request_finished.connect(forget_request_id, dispatch_uid="config.forget_request_id")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if REQUEST_ID_PATTERN.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        request_id_var.set(request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class HealthCheckMiddleware:
    """Answer the health probes before Host validation, sessions or CSRF run.

    Load balancers probe each node by its own address, which is not in ALLOWED_HOSTS; the probes
    reveal nothing a Host check would protect. Placed right after SecurityMiddleware, whose HTTPS
    redirect exempts /health/ (SECURE_REDIRECT_EXEMPT).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from config import health

        self.get_response = get_response
        self.views = {"/health/live": health.live, "/health/ready": health.ready}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = self.views.get(request.path_info)
        if view is not None:
            return view(request)
        return self.get_response(request)


def json_body_replace(response: HttpResponse, body: Any) -> None:
    """Give `response` a new JSON body, and the `Content-Length` of that body.

    Middleware further in (CommonMiddleware) has already set the length of the old body; an HTTP
    client reads exactly that many bytes, so a longer body left with it arrives cut short.
    """
    response.content = json.dumps(body).encode()
    if response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))


class ErrorShapeMiddleware:
    """Adds the project's error keys to the JSON error bodies of third-party code under `PREFIX`."""

    PREFIX = ""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(self.PREFIX)
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("application/json")
            and not getattr(response, "streaming", False)
        ):
            self.reshape(response)
        return response

    @classmethod
    def reshape(cls, response: HttpResponse) -> None:
        try:
            body = json.loads(response.content)
        except ValueError:
            return
        if isinstance(body, dict) and cls.add_project_keys(body, response.status_code):
            json_body_replace(response, body)

    @classmethod
    def add_project_keys(cls, body: dict[str, Any], status_code: int) -> bool:
        """Add the keys to the error body in place; False when it is not one to change."""
        raise NotImplementedError


class HeadlessErrorShapeMiddleware(ErrorShapeMiddleware):
    """Give allauth headless error bodies the project's error keys, keeping allauth's own.

    allauth answers `{"status": 400, "errors": [{"message", "code", "param"}]}`, which its
    published specification and client libraries rely on. Each error also gets `detail` and
    `attr`, and the body `type`, so every API client can read every error the same way
    (docs/decisions/0004-errors-logs-and-edge.md).
    """

    PREFIX = "/_allauth/"

    @classmethod
    def add_project_keys(cls, body: dict[str, Any], status_code: int) -> bool:
        errors = body.get("errors")
        if not isinstance(errors, list) or "type" in body:
            return False
        body["type"] = (
            "server_error"
            if status_code >= 500
            else ("validation_error" if status_code == 400 else "client_error")
        )
        for error in errors:
            if isinstance(error, dict):
                error.setdefault("detail", error.get("message", ""))
                error.setdefault("attr", error.get("param"))
                error.setdefault("code", "invalid")
        return True


class OAuthErrorShapeMiddleware(ErrorShapeMiddleware):
    """Give the OAuth endpoints' JSON error bodies the project's error keys, keeping RFC 6749's.

    The token, revocation, introspection and device endpoints answer RFC 6749 §5.2
    `{"error": "...", "error_description": "..."}`, which every OAuth client library reads. The
    body also gets `type` and `errors: [{"code", "detail", "attr"}]`, as allauth's do
    (HeadlessErrorShapeMiddleware), so any API client reads any error the same way.
    """

    PREFIX = "/o/"
    # A `detail` for errors sent without an `error_description` (RFC 6749 §5.2, RFC 8628 §3.5).
    DETAILS = {
        "invalid_request": "The request is missing a parameter, or has one that is not valid.",
        "invalid_client": "The client could not be authenticated.",
        "invalid_grant": (
            "The authorization code, refresh token or device code is invalid, expired, revoked, "
            "or was issued to another client."
        ),
        "unauthorized_client": "This client may not use this grant type.",
        "unsupported_grant_type": "This grant type is not supported.",
        "invalid_scope": "A requested scope is unknown, or not allowed for this client.",
        "unsupported_token_type": "This token type cannot be revoked.",
        "authorization_pending": "The user has not answered yet: poll again after the interval.",
        "slow_down": "Polling too fast: wait 5 seconds more between polls from now on.",
        "access_denied": "The user, or this server, refused the request.",
        "expired_token": "The device code has expired: start again.",
    }

    @classmethod
    def add_project_keys(cls, body: dict[str, Any], status_code: int) -> bool:
        if not isinstance(body.get("error"), str) or "errors" in body:
            return False
        body["type"] = (
            "server_error"
            if status_code >= 500
            else ("validation_error" if body["error"] == "invalid_request" else "client_error")
        )
        detail = body.get("error_description") or cls.DETAILS.get(body["error"], body["error"])
        body["errors"] = [{"code": body["error"], "detail": str(detail), "attr": None}]
        return True
