"""Cross-cutting HTTP middleware: the real client IP, the request ID, request bodies no view can
take, and the one error shape on answers of third-party code."""

from __future__ import annotations

import array
import codecs
import ipaddress
import itertools
import json
import re
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse, UnreadablePostError

from config.context import request_id_var
from config.views import API_PATH_PREFIXES, error_body, error_response, status_error

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
        if "type" in body:
            return False
        if "errors" not in body and "meta" not in body:
            # A bare `{"status": 409}` (no flow pending) or `{"status": 429}`; a body with `meta`
            # is allauth's authentication state (401/410, its flows), not an error.
            code, detail = status_error(status_code)
            body["errors"] = [{"code": code, "message": detail, "param": None}]
        errors = body.get("errors")
        if not isinstance(errors, list):
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


# --- request bodies -------------------------------------------------------------------------

# A JSON string, up to its closing quote or, unterminated, to the end of the body: every match
# attempt consumes all it scans (possessive quantifiers, no failing attempt), so the scan is linear.
JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
JSON_STRING_TEXT = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
# An opening bracket steps one level in (1), a closing one out (0xff: -1 as a signed byte).
BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
UTF_8 = codecs.lookup("utf-8").name


def json_nesting_exceeds(text: bytes | str, limit: int) -> bool:
    """Whether arrays and objects in `text`, read as JSON, nest deeper than `limit`; linear time.

    Brackets inside strings do not count. Past a syntax error a parser stops, so what follows it
    can only make the depth found larger, never hide one the parser would reach. Every step runs
    in C: a 2.5 MB body costs less to scan than json.loads takes to parse it.
    """
    # Too few brackets to nest that deep: the common case, counted at C speed.
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= limit:
            return False
        structure = JSON_STRING_TEXT.sub("", text).encode(errors="ignore")  # brackets are ASCII
    else:
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        structure = JSON_STRING.sub(b"", text)
    steps = array.array("b", structure.translate(BRACKET_STEPS, NOT_BRACKETS))
    # The running sum of the steps is the depth after each bracket.
    return max(itertools.accumulate(steps), default=0) > limit


def json_encodings(body: bytes, declared: str | None) -> set[str]:
    """The encodings JSON parsers may decode `body` with: the declared charset (DRF's parser), and
    what json.loads detects in bytes (UTF-8, UTF-16 or UTF-32, RFC 8259 §8.1 aside)."""
    encodings = {json.detect_encoding(body)}
    if declared:
        encodings.add(declared)
    names = set()
    for encoding in encodings:
        try:
            names.add(codecs.lookup(encoding).name)
        except LookupError:
            continue
    return names


class RequestBodyGuardMiddleware:
    """Refuse, before any middleware or view reads it, a body no view can take.

    - Over DATA_UPLOAD_MAX_MEMORY_SIZE (multipart uploads aside, whose files are streamed to disk):
      413 `request_too_large`. Django would raise RequestDataTooBig wherever the body is first read,
      a 500 in DRF views and some middleware.
    - Arrays or objects nested deeper than REQUEST_JSON_MAX_DEPTH: 400 `json_too_deep`. Python's
      JSON parser recurses once per level, and a RecursionError is a 500 in every view that parses
      JSON. Every body is checked whatever its Content-Type says, because allauth's headless API
      and the toolkit's client registration parse the body as JSON whatever it says. A multipart
      body starts with its boundary (`--`), which no JSON parser gets past.

    Early in the chain (before sessions, the sign-in gate and CSRF, which read bodies too).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return error_response(
                request, status=400, code="bad_request", detail="The Content-Length header is not valid."
            )
        if not length:
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        multipart = request.content_type == "multipart/form-data"
        if limit is not None and length > limit:
            if multipart:
                return self.get_response(request)
            return error_response(
                request,
                status=413,
                code="request_too_large",
                detail=f"The request body is larger than the {limit} bytes this service accepts.",
            )
        try:
            body = request.body
        except UnreadablePostError:
            return error_response(
                request, status=400, code="bad_request", detail="The request body is incomplete."
            )
        if multipart and body.lstrip().startswith(b"--"):
            return self.get_response(request)
        if self.too_deep(body, request.encoding):
            return error_response(
                request,
                status=400,
                code="json_too_deep",
                detail=f"The JSON body nests more than {settings.REQUEST_JSON_MAX_DEPTH} levels deep.",
            )
        return self.get_response(request)

    @staticmethod
    def too_deep(body: bytes, declared_encoding: str | None) -> bool:
        limit = settings.REQUEST_JSON_MAX_DEPTH
        for encoding in json_encodings(body, declared_encoding):
            # UTF-8 never puts an ASCII byte inside a multi-byte character: its bytes are scanned.
            text = body if encoding == UTF_8 else body.decode(encoding, errors="replace")
            if json_nesting_exceeds(text, limit):
                return True
        return False


# --- error bodies -----------------------------------------------------------------------------

# Pages for people under /o/: their errors are HTML like the rest of the site's pages (RFC 6749
# §4.1.2.1: an authorization error that cannot go back to the client is shown to the user).
OAUTH_PAGE_PREFIXES = (
    "/o/authorize/",
    "/o/device/",
    "/o/device-confirm/",
    "/o/device-grant-status/",
    "/o/logout/",
)
# Answers third-party views send without a body, whose cause is known: allauth's headless views
# answer a bare 400 to a body that is not a JSON object.
BODILESS_ERRORS = {("/_allauth/", 400): ("parse_error", "The request body must be a JSON object.")}


class JsonErrorBodyMiddleware:
    """Give every error on an API path a JSON body in the one error shape.

    Third-party views answer some errors with an empty body (Django's 405 for a method a view lacks,
    allauth's 400 for a body that is not JSON, the toolkit's 401s) or in their own media type (the
    API schema and documentation views); API clients then get nothing they can read. The error
    keeps its status and headers (`Allow`, `WWW-Authenticate`, `Retry-After`); a DRF error rendered
    for another media type keeps its codes. allauth's headless errors also get allauth's keys.
    Outermost of the error-shape middleware, so it sees what the others left.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and request.path.startswith(API_PATH_PREFIXES)
            and not request.path.startswith(OAUTH_PAGE_PREFIXES)
            and not response.get("Content-Type", "").startswith("application/json")
            and not getattr(response, "streaming", False)
        ):
            response["Content-Type"] = "application/json"
            json_body_replace(response, self.body(request, response))
        return response

    @staticmethod
    def body(request: HttpRequest, response: HttpResponse) -> dict[str, Any]:
        status = response.status_code
        data = getattr(response, "data", None)  # a DRF error, rendered for another media type
        if isinstance(data, dict) and isinstance(data.get("errors"), list):
            return data
        prefix = next((prefix for prefix in API_PATH_PREFIXES if request.path.startswith(prefix)), "")
        code, detail = (
            BODILESS_ERRORS.get((prefix, status), status_error(status))
            if not response.content
            else status_error(status)
        )
        body = error_body(status=status, code=code, detail=detail)
        if prefix == "/_allauth/":
            body["status"] = status
            body["errors"][0] |= {"message": detail, "param": None}
        return body
