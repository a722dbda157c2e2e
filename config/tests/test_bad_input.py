"""Hostile request shapes on every route of the URL map: never a 500, always the one error shape.

The routes are read from the resolver itself (config.urls and everything it includes), so a route
added later is covered without touching this file. Each one gets, for every method, a body over
DATA_UPLOAD_MAX_MEMORY_SIZE, `[` x 100,000, malformed JSON and a content type nobody accepts, as
an anonymous caller, a signed-in user and a staff member with a second factor.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.exceptions import Resolver404
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory, mark_reauthenticated, totp_enrol
from config.middleware import json_nesting_exceeds

pytestmark = pytest.mark.django_db

# Path parameters: a malformed id (36 dashes pass the router's `[0-9a-f-]{36}`), the nil UUID (well
# formed, matches nothing), and short values for slug, int and free-text converters.
SAMPLE_VALUES = ("-" * 36, "00000000-0000-0000-0000-000000000000", "x", "0")
SAMPLES_PER_ROUTE = 2  # the first two that the route admits
FORMAT_SUFFIX = "json"  # DRF's format-suffix routes (`users/me.json`)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Refused before any view reads the body, whatever the route and method.
EXPECTED_STATUS = {"too_large": 413, "too_deep": 400}
API_PREFIXES = ("/api/", "/o/", "/_allauth/", "/.well-known/", "/health/")
# The authorization server's pages for people (RFC 6749 §4.1.2.1: an error that cannot be sent
# back to the client is shown to the user), which answer HTML like the rest of the site.
OAUTH_PAGES = ("/o/authorize/", "/o/device/", "/o/device-confirm/", "/o/device-grant-status/", "/o/logout/")

GROUP = re.compile(r"\(\?P<(?P<name>\w+)>")
LITERAL_ALTERNATIVES = re.compile(r"\w+(\|\w+)+")
CONVERTER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")


def routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    """Every route of the URL map, as the concatenation of its patterns."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def replace_groups(route: str, value: str) -> str:
    """Replace every named regex group `(?P<name>...)` of `route` with a sample value."""
    result, position = [], 0
    for match in GROUP.finditer(route):
        if match.start() < position:
            continue
        result.append(route[position : match.start()])
        depth, index, in_class = 1, match.end(), False
        while depth:
            character = route[index]
            if character == "\\":
                index += 1
            elif character == "[":
                in_class = True
            elif character == "]":
                in_class = False
            elif not in_class and character == "(":
                depth += 1
            elif not in_class and character == ")":
                depth -= 1
            index += 1
        body = route[match.end() : index - 1]
        if match["name"] == "format":
            result.append(FORMAT_SUFFIX)
        elif LITERAL_ALTERNATIVES.fullmatch(body):
            result.append(body.split("|")[0])  # the admin's `(?P<app_label>auth|sites|...)`
        else:
            result.append(value)
        position = index
    result.append(route[position:])
    return "".join(result)


def sample_path(route: str, value: str) -> str:
    path = replace_groups(route, value)
    path = CONVERTER.sub(lambda match: FORMAT_SUFFIX if match["name"] == "format" else value, path)
    # What is left of the regular expressions: anchors, optional slashes, escapes, catch-alls.
    for token in ("^", "$", "/?", ".*"):
        path = path.replace(token, "")
    return "/" + path.replace("\\", "")


def sample_paths() -> list[str]:
    """One or more paths that reach each route of the URL map (checked with the resolver)."""
    resolver = get_resolver()
    paths: dict[str, None] = {}
    for route in routes(resolver.url_patterns):
        reaching = []
        for value in SAMPLE_VALUES:
            path = sample_path(route, value)
            try:
                resolver.resolve(path)
            except Resolver404:
                continue
            # A route shadowed by an earlier one (a view replaced at the same path) is reached
            # through that one.
            if path not in reaching:
                reaching.append(path)
        assert reaching, f"no sample path reaches the route {route!r}"
        paths |= dict.fromkeys(reaching[:SAMPLES_PER_ROUTE])
    return list(paths)


@dataclass(frozen=True)
class Shape:
    name: str
    body: bytes
    content_type: str


def shapes() -> list[Shape]:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return [
        Shape("too_large", b'{"a": "' + b"x" * limit + b'"}', "application/json"),
        Shape("too_deep", b"[" * 100_000, "application/json"),
        Shape("malformed", b'{"username": "x", ', "application/json"),
        Shape("wrong_type", b"<request><username>x</username></request>", "application/xml"),
    ]


def send_bytes(client: APIClient, method: str, path: str, body: bytes, **extra: Any) -> Any:
    """`client.generic` with a raw body (Django takes bytes; its type stubs say str)."""
    return client.generic(method, path, body, **extra)  # type: ignore[arg-type]


class Caller:
    """A test client signed in as `user` (a session for pages and allauth's browser API, and
    DRF's forced authentication for the API), signed in again whenever a route signed it out."""

    def __init__(self, user: User | None) -> None:
        self.user = user
        self.client = APIClient(raise_request_exception=False)
        if user is not None:
            self.client.force_authenticate(user)
        self.sign_in()

    def sign_in(self) -> None:
        if self.user is None:
            return
        self.client.force_login(self.user)
        if self.user.is_staff:
            mark_reauthenticated(self.client)

    def send(self, method: str, path: str, shape: Shape) -> Any:
        cookie = self.client.cookies.get(settings.SESSION_COOKIE_NAME)
        if self.user is not None and (cookie is None or not cookie.value):
            self.sign_in()
        return send_bytes(self.client, method, path, shape.body, content_type=shape.content_type)


def caller(identity: str) -> Caller:
    if identity == "anonymous":
        return Caller(None)
    staff = identity == "staff"
    user = UserFactory.create(is_staff=staff, is_superuser=staff)
    if staff:
        totp_enrol(user)
    return Caller(user)


def error_shape_problem(response: Any) -> str | None:
    """Why `response` is not in the one error shape (README "Every error has one shape"), or None."""
    if not response.get("Content-Type", "").startswith("application/json"):
        return f"not JSON but {response.get('Content-Type')!r}"
    try:
        body = response.json()
    except ValueError:
        return "a body that does not parse"
    if not isinstance(body, dict):
        return f"not an object: {body!r:.200}"
    if response.request["PATH_INFO"].startswith("/_allauth/") and "meta" in body and "errors" not in body:
        # allauth's authentication state ({"status": 401, "data": {"flows": [...]}, "meta": {...}}):
        # what its client libraries read to continue a sign-in, not an error body.
        return None
    errors = body.get("errors")
    if body.get("type") not in {"validation_error", "client_error", "server_error"} or not errors:
        return f"no type and errors: {body!r:.200}"
    if not all(isinstance(error, dict) and {"code", "detail", "attr"} <= set(error) for error in errors):
        return f"errors without code, detail and attr: {errors!r:.200}"
    return None


@pytest.fixture
def no_rate_limits(settings: Any) -> None:
    """Thousands of requests from one address: every limit off, so each route answers itself."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]),
    }
    for name in ("SIGNIN", "SIGNUP", "PASSWORD_RESET", "VERIFICATION_RESEND", "TOKEN_REFRESH"):
        setattr(settings, f"RATELIMIT_{name}", "")
    settings.RATELIMIT_ENABLE = False
    settings.ACCOUNT_RATE_LIMITS = False


# Bodies too large or too deep are refused before sessions or authentication are read: who sends
# them cannot change the answer, so one caller walks them (the walk is the suite's longest test).
WALKS = [
    *(
        (identity, shape)
        for identity in ("anonymous", "user", "staff")
        for shape in ("malformed", "wrong_type")
    ),
    ("anonymous", "too_large"),
    ("anonymous", "too_deep"),
]


@pytest.mark.usefixtures("no_rate_limits")
@pytest.mark.parametrize(("identity", "shape_name"), WALKS)
def test_every_route_answers_bad_input_with_a_4xx_in_the_error_shape(identity: str, shape_name: str) -> None:
    shape = next(shape for shape in shapes() if shape.name == shape_name)
    client = caller(identity)
    failures = []

    for path in sample_paths():
        for method in METHODS:
            response = client.send(method, path, shape)
            status = response.status_code
            problems = []
            if status >= 500:
                problems.append("a server error")
            if shape.name in EXPECTED_STATUS and status != EXPECTED_STATUS[shape.name]:
                problems.append(f"not a {EXPECTED_STATUS[shape.name]}")
            if status >= 400 and path.startswith(API_PREFIXES) and not path.startswith(OAUTH_PAGES):
                problems.append(error_shape_problem(response) or "")
            if any(problems):
                failures.append(f"{method} {path} -> {status}: {problems} {response.content[:120]!r}")

    assert failures == [], f"{len(failures)} failures:\n" + "\n".join(failures[:60])


# --- the findings as reported, one by one ------------------------------------------------------


def json_too_deep() -> dict[str, Any]:
    return {
        "type": "client_error",
        "errors": [
            {"code": "json_too_deep", "detail": "The JSON body nests more than 64 levels deep.", "attr": None}
        ],
    }


@pytest.mark.parametrize(
    "device_id", ["-" * 36, "00000000-0000-0000-0000-000000000000", "0123456789abcdef" * 2 + "----"]
)
def test_revoking_a_signed_in_device_by_an_id_that_is_no_device_is_a_404(
    user_client: APIClient, device_id: str
) -> None:
    response = user_client.delete(f"/api/v1/sessions/{device_id}/")

    assert response.status_code == 404
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "not_found", "detail": "Not found.", "attr": None}],
    }


@pytest.mark.parametrize(
    ("identity", "path"),
    [
        ("user", "/api/v1/users/me/"),
        ("user", "/api/v1/organizations/invitations/accept/"),
        ("anonymous", "/_allauth/app/v1/auth/signup"),
        ("anonymous", "/o/register/"),
    ],
)
def test_deeply_nested_json_is_refused_before_any_parser_reads_it(identity: str, path: str) -> None:
    client = caller(identity).client
    method = "PATCH" if path == "/api/v1/users/me/" else "POST"

    response = send_bytes(client, method, path, b"[" * 100_000, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == json_too_deep()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        # allauth and the toolkit's registration read the body as JSON whatever its type says.
        (b"[" * 100_000, "text/plain"),
        (b"{" * 100_000, "application/x-www-form-urlencoded"),
        # json.loads reads UTF-16 and UTF-32 bytes too; DRF decodes with the declared charset.
        (("[" * 100_000).encode("utf-16-le"), "application/json"),
        (("[" * 100_000).encode("utf-32"), "application/json"),
        (("[" * 100_000).encode("utf-7"), "application/json; charset=utf-7"),
    ],
)
def test_deeply_nested_json_is_refused_whatever_its_content_type_or_encoding(
    body: bytes, content_type: str
) -> None:
    client = APIClient(raise_request_exception=False)

    for path in ("/_allauth/app/v1/auth/signup", "/o/register/", "/api/v1/auth/token/refresh/"):
        response = send_bytes(client, "POST", path, body, content_type=content_type)

        assert (path, response.status_code, response.json()) == (path, 400, json_too_deep())


def test_json_nested_to_the_limit_reaches_the_view(user_client: APIClient, user: User) -> None:
    nested = "[" * 63 + '"x"' + "]" * 63  # 64 levels with the object around it

    response = user_client.generic(
        "PATCH", "/api/v1/users/me/", f'{{"display_name": {nested}}}', content_type="application/json"
    )

    assert response.status_code == 400
    assert [(error["attr"], error["code"]) for error in response.json()["errors"]] == [
        ("display_name", "invalid")
    ]
    user.refresh_from_db()
    assert user.display_name == user.username


def test_brackets_inside_json_strings_do_not_count(user_client: APIClient, user: User) -> None:
    description = '[{"\\' * 60  # brackets, quotes and backslashes, escaped in JSON

    response = user_client.patch("/api/v1/users/me/", {"description": description}, format="json")

    assert response.status_code == 200
    user.refresh_from_db()
    assert user.description == description


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 2_600_000,
        b"[]" * 1_300_000,
        b'["\\"' * 650_000,
        b'"' * 2_600_000,
        b'"\\' * 1_300_000,
        (b"[" * 64 + b"]" * 64) * 20_000,
    ],
    ids=["openers", "pairs", "escaped-quotes", "quotes", "backslashes", "deep-blocks"],
)
def test_the_nesting_scan_answers_hostile_bodies_as_a_json_reader_would(text: bytes) -> None:
    """Bodies built to make a backtracking scan quadratic: the scan (linear by construction, see
    its regular expressions) agrees with a plain character-by-character reader. Its speed is not
    timed here (the machines are noisy): a quadratic scan would not finish these bodies at all."""
    assert json_nesting_exceeds(text, 64) is nesting_deeper_than(text, 64)


def nesting_deeper_than(text: bytes, limit: int) -> bool:
    """The reference: one pass, brackets outside strings, escapes inside them."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            if depth == 0:
                break  # a parser stops at a closing bracket it cannot match
            depth -= 1
    return deepest > limit


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 65 + b"]" * 65, True),
        (b"[" * 65, True),  # cut short: a parser recurses before it finds out
        (b'["' + b"[" * 100 + b'"]', False),
        (b'["\\"' + b"[" * 100 + b'"]', False),
        (b'["\\\\"' + b"[" * 100, True),  # the escaped backslash ends the escape, then the string
        (b'"' + b"[" * 100, False),  # all inside an unterminated string
        (b"]" * 100 + b"[" * 100, False),  # a parser stops at the first `]`
        ("[" * 100, True),
    ],
    ids=[
        "64-levels",
        "65-levels",
        "cut-short",
        "in-a-string",
        "after-an-escaped-quote",
        "after-an-escaped-backslash",
        "in-an-unterminated-string",
        "after-a-closing-bracket",
        "decoded-text",
    ],
)
def test_the_nesting_scan_reads_strings_and_escapes_as_json_does(text: bytes | str, too_deep: bool) -> None:
    assert json_nesting_exceeds(text, 64) is too_deep


@pytest.mark.parametrize(
    ("path", "accept", "expected_type"),
    [
        ("/api/v1/users/me/", "application/json", "application/json"),
        ("/_allauth/app/v1/auth/signup", "application/json", "application/json"),
        ("/o/token/", "application/json", "application/json"),
        ("/accounts/login/", "text/html", "text/html"),
    ],
)
def test_a_body_over_the_upload_limit_is_a_413(
    settings: Any, path: str, accept: str, expected_type: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = APIClient(raise_request_exception=False)

    response = client.post(
        path, b'{"a": "' + b"x" * 1000 + b'"}', content_type="application/json", HTTP_ACCEPT=accept
    )

    assert response.status_code == 413
    assert response["Content-Type"].startswith(expected_type)
    if expected_type == "application/json":
        assert response.json() == {
            "type": "client_error",
            "errors": [
                {
                    "code": "request_too_large",
                    "detail": "The request body is larger than the 1000 bytes this service accepts.",
                    "attr": None,
                }
            ],
        }


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = "BoUnDaRy"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("fields", "status", "code", "detail"),
    [
        ({"description": "x" * 2000}, 413, "request_too_large", "The request body is too large."),
        ({f"field{n}": "x" for n in range(20)}, 400, "too_many_fields", "The request has too many fields."),
    ],
)
def test_multipart_bodies_over_the_field_limits_are_4xx_in_drf_views(
    settings: Any,
    user_client: APIClient,
    user: User,
    fields: dict[str, str],
    status: int,
    code: str,
    detail: str,
) -> None:
    """A multipart body may be larger than DATA_UPLOAD_MAX_MEMORY_SIZE (its files are streamed to
    disk); Django's parser then refuses its fields, where DRF's parser reads them."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body, content_type = multipart(fields)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)

    response = send_bytes(client, "PATCH", "/api/v1/users/me/", body, content_type=content_type)

    assert response.status_code == status
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": code, "detail": detail, "attr": None}],
    }
    user.refresh_from_db()
    assert user.description == ""


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"login": "x" * 2000}, 413, "request_too_large"),
        ({f"field{n}": "x" for n in range(20)}, 400, "too_many_fields"),
    ],
)
def test_multipart_bodies_over_the_field_limits_are_4xx_outside_drf(
    settings: Any, fields: dict[str, str], status: int, code: str
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body, content_type = multipart(fields)
    client = APIClient(raise_request_exception=False)

    page = send_bytes(
        client, "POST", "/accounts/login/", body, content_type=content_type, HTTP_ACCEPT="text/html"
    )
    api = send_bytes(
        client, "POST", "/accounts/login/", body, content_type=content_type, HTTP_ACCEPT="application/json"
    )

    assert (page.status_code, page["Content-Type"]) == (status, "text/html; charset=utf-8")
    assert api.status_code == status
    assert api.json()["errors"][0]["code"] == code


@pytest.mark.parametrize("body", [b'{"username": "someone", ', b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_no_json_object_is_a_400_in_the_error_shape_on_allauth(body: bytes) -> None:
    client = APIClient(raise_request_exception=False)

    response = send_bytes(
        client, "POST", "/_allauth/app/v1/auth/login", body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "type": "client_error",
        "errors": [
            {
                "code": "parse_error",
                "detail": "The request body must be a JSON object.",
                "message": "The request body must be a JSON object.",
                "attr": None,
                "param": None,
            }
        ],
    }


def test_a_bodiless_allauth_conflict_gets_its_error(api_client: APIClient) -> None:
    response = api_client.post("/_allauth/app/v1/auth/code/confirm", {"code": "123456"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "status": 409,
        "type": "client_error",
        "errors": [
            {"code": "conflict", "detail": "Conflict.", "message": "Conflict.", "attr": None, "param": None}
        ],
    }


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/o/token/", "POST, OPTIONS"),
        ("POST", "/.well-known/openid-configuration", "GET, HEAD, OPTIONS"),
        ("DELETE", "/_allauth/openapi.json", "GET, HEAD, OPTIONS"),
    ],
)
def test_method_not_allowed_on_third_party_endpoints_is_in_the_error_shape(
    method: str, path: str, allow: str
) -> None:
    response = APIClient(raise_request_exception=False).generic(method, path)

    assert response.status_code == 405
    assert response["Allow"] == allow
    assert error_shape_problem(response) is None
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


def test_the_api_documentation_answers_errors_in_the_error_shape(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/schema/", {}, format="json")

    assert response.status_code == 405
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "method_not_allowed", "detail": 'Method "POST" not allowed.', "attr": None}],
    }


def test_phone_number_endpoints_are_not_served(user: User) -> None:
    client = caller("user").client

    for path in ("/_allauth/browser/v1/account/phone", "/_allauth/app/v1/account/phone"):
        response = client.get(path)

        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "not_found"


def test_format_suffix_routes_are_not_served(user_client: APIClient) -> None:
    response = user_client.get("/api/v1/sessions.json")

    assert response.status_code == 404
