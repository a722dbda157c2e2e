"""Security headers, CORS allow-list, and client IPs behind trusted proxies."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from config.middleware import ClientIPMiddleware

pytestmark = pytest.mark.django_db


def test_html_pages_carry_a_content_security_policy(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1) for directive in response["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["base-uri"] == "'self'"


@pytest.mark.parametrize("path", ["/", "/api/v1/schema/", "/api/v1/users/me/", "/accounts/login/"])
def test_every_response_forbids_sniffing_framing_and_leaky_referrers(client: Client, path: str) -> None:
    response = client.get(path)

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production_mode_sends_hsts_over_https(client: Client) -> None:
    response = client.get("/", secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_production_cookies_are_secure(settings: Any) -> None:
    assert settings.SESSION_COOKIE_SECURE is True
    assert settings.CSRF_COOKIE_SECURE is True
    assert settings.SESSION_COOKIE_HTTPONLY is True


def test_cors_allows_a_listed_origin_on_the_api(client: Client, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    preflight = client.options(
        "/api/v1/users/me/",
        HTTP_ORIGIN="https://app.example.com",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
    )
    simple = client.get("/api/v1/users/me/", HTTP_ORIGIN="https://app.example.com")

    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PATCH" in preflight["Access-Control-Allow-Methods"]
    assert "authorization" in preflight["Access-Control-Allow-Headers"]
    assert simple["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "X-Request-ID" in simple["Access-Control-Expose-Headers"]


def test_cors_ignores_an_unlisted_origin(client: Client, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    response = client.get("/api/v1/users/me/", HTTP_ORIGIN="https://evil.example.net")

    assert "Access-Control-Allow-Origin" not in response


def test_cors_does_not_apply_to_html_pages(client: Client, settings: Any) -> None:
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]

    response = client.get("/", HTTP_ORIGIN="https://app.example.com")

    assert "Access-Control-Allow-Origin" not in response


def resolved_ip(remote_addr: str, forwarded_for: str | None, settings: Any, trusted: list[str]) -> str:
    settings.TRUSTED_PROXIES = trusted
    seen: dict[str, str] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen["ip"] = request.META["REMOTE_ADDR"]
        return HttpResponse()

    request = RequestFactory().get("/", REMOTE_ADDR=remote_addr)
    if forwarded_for is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded_for
    ClientIPMiddleware(view)(request)
    return seen["ip"]


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "trusted", "expected"),
    [
        # No proxies trusted: the header is ignored, whatever it says.
        ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),
        # The peer is not a trusted proxy: a forged header changes nothing.
        ("203.0.113.9", "198.51.100.1", ["10.0.0.0/8"], "203.0.113.9"),
        # One trusted proxy in front: the address it saw.
        ("10.0.0.5", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        # A client forging a hop: only the hop our proxy appended is believed.
        ("10.0.0.5", "1.2.3.4, 198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        # Two trusted proxies chained: skip both.
        ("10.0.0.5", "198.51.100.1, 10.0.0.7", ["10.0.0.0/8"], "198.51.100.1"),
        # IPv6 and single-address entries.
        ("::1", "2001:db8::42", ["::1"], "2001:db8::42"),
        # A malformed hop: trust nothing beyond the proxy.
        ("10.0.0.5", "not-an-ip", ["10.0.0.0/8"], "10.0.0.5"),
        # Every hop trusted: the leftmost.
        ("10.0.0.5", "10.0.0.9", ["10.0.0.0/8"], "10.0.0.9"),
    ],
)
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(
    settings: Any, remote_addr: str, forwarded_for: str, trusted: list[str], expected: str
) -> None:
    assert resolved_ip(remote_addr, forwarded_for, settings, trusted) == expected
