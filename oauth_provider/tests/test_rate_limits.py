"""Rate limits on the OAuth endpoints clients call directly (issue 12 item 14, docs/decisions/0015):
per IP and per named client, 429 with Retry-After in the error shape, no database query for a
refused request, and open while the cache is down. Tests use hourly rates: a window never ends
mid-test."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model

from accounts.tests.factories import UserFactory
from oauth_provider.models import Application
from oauth_provider.tests.token_flows import RegisteredClient, registered_client
from oauth_provider.views.device import user_code_generate

pytestmark = pytest.mark.django_db

THROTTLED_BODY = {
    "type": "client_error",
    "errors": [{"code": "throttled", "detail": "Too many requests. Retry later.", "attr": None}],
}
FORM = "application/x-www-form-urlencoded"


def form_post(path: str, data: dict[str, str], *, ip: str = "203.0.113.10", **headers: str) -> Any:
    return Client().post(path, urlencode(data), content_type=FORM, headers=headers, REMOTE_ADDR=ip)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert response["Content-Type"] == "application/json"
    assert response.json() == THROTTLED_BODY


# (path, per-IP setting, per-client setting, a request's body) of each limited client endpoint.
CLIENT_ENDPOINTS = [
    (
        "/o/token/",
        "RATELIMIT_OAUTH_TOKEN",
        "RATELIMIT_OAUTH_TOKEN_PER_CLIENT",
        {"grant_type": "client_credentials"},
    ),
    ("/o/revoke_token/", "RATELIMIT_OAUTH_REVOKE", "RATELIMIT_OAUTH_REVOKE_PER_CLIENT", {"token": "x"}),
    ("/o/introspect/", "RATELIMIT_OAUTH_INTROSPECT", "RATELIMIT_OAUTH_INTROSPECT_PER_CLIENT", {"token": "x"}),
    (
        "/o/device-authorization/",
        "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION",
        "RATELIMIT_OAUTH_DEVICE_AUTHORIZATION_PER_CLIENT",
        {"scope": "openid"},
    ),
]


@pytest.mark.parametrize(("path", "ip_setting", "client_setting", "body"), CLIENT_ENDPOINTS)
def test_each_client_endpoint_is_limited_per_ip_without_a_database_query(
    path: str,
    ip_setting: str,
    client_setting: str,
    body: dict[str, str],
    settings: Any,
    django_assert_num_queries: Callable[..., Any],
) -> None:
    setattr(settings, ip_setting, "2/h")
    data = {**body, "client_id": "no-such-client", "client_secret": "wrong"}

    answered = [form_post(path, data).status_code for _ in range(2)]
    with django_assert_num_queries(0):
        refused = form_post(path, data)

    assert 429 not in answered
    assert_throttled(refused)
    assert form_post(path, data, ip="203.0.113.11").status_code != 429  # another IP


@pytest.mark.parametrize(("path", "ip_setting", "client_setting", "body"), CLIENT_ENDPOINTS)
def test_each_client_endpoint_is_limited_per_client_from_any_ip(
    path: str,
    ip_setting: str,
    client_setting: str,
    body: dict[str, str],
    settings: Any,
    django_assert_num_queries: Callable[..., Any],
) -> None:
    """The client named by HTTP Basic credentials or by the body's client_id: one budget."""
    setattr(settings, client_setting, "3/h")
    named, other = "busy-client", "quiet-client"

    answered = [
        form_post(path, {**body, "client_id": named}, ip="198.51.100.1").status_code,
        form_post(path, body, ip="198.51.100.2", Authorization=basic(named, "wrong")).status_code,
        form_post(path, {**body, "client_id": named, "client_secret": "x"}, ip="198.51.100.3").status_code,
    ]
    with django_assert_num_queries(0):
        refused = form_post(path, body, ip="198.51.100.4", Authorization=basic(named, "wrong"))

    assert 429 not in answered
    assert_throttled(refused)
    assert form_post(path, {**body, "client_id": other}, ip="198.51.100.4").status_code != 429


def test_a_refused_request_issues_nothing(settings: Any) -> None:
    settings.RATELIMIT_OAUTH_TOKEN_PER_CLIENT = "1/h"
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    data = {"grant_type": "client_credentials", **client.credentials()}

    first = form_post("/o/token/", data)
    second = form_post("/o/token/", data)

    assert first.status_code == 200, first.content
    assert_throttled(second)
    assert get_access_token_model().objects.count() == 1


def test_a_request_over_its_ip_limit_does_not_spend_the_clients_budget(settings: Any) -> None:
    """An attacker naming a client cannot spend more of its budget than its own IP's limit."""
    settings.RATELIMIT_OAUTH_TOKEN = "1/h"
    settings.RATELIMIT_OAUTH_TOKEN_PER_CLIENT = "2/h"
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    data = {"grant_type": "client_credentials", **client.credentials()}

    from_attacker = [form_post("/o/token/", data, ip="192.0.2.66").status_code for _ in range(5)]
    from_client = form_post("/o/token/", data, ip="192.0.2.1")

    assert from_attacker == [200, 429, 429, 429, 429]
    assert from_client.status_code == 200, from_client.content


def test_registration_is_limited_per_ip(settings: Any, django_assert_num_queries: Callable[..., Any]) -> None:
    settings.RATELIMIT_OAUTH_REGISTER = "2/h"

    def register(ip: str = "203.0.113.10") -> Any:
        metadata = {"redirect_uris": ["https://app.example.com/callback"]}
        return Client().post("/o/register/", metadata, content_type="application/json", REMOTE_ADDR=ip)

    # The client configuration endpoint (RFC 7592) shares the budget.
    configuration = Client().get("/o/register/some-client/", REMOTE_ADDR="203.0.113.10")
    answered = [register().status_code, configuration.status_code]
    with django_assert_num_queries(0):
        refused = register()

    assert answered == [401, 401]
    assert_throttled(refused)
    assert register("203.0.113.11").status_code == 401


def test_user_codes_typed_on_the_device_page_are_limited_per_ip(
    settings: Any, django_assert_num_queries: Callable[..., Any]
) -> None:
    """Across every account signed in from one IP, beside the per-user limit; the refusal is a page."""
    settings.RATELIMIT_DEVICE_USER_CODE_PER_IP = "2/h"
    browsers = [Client(REMOTE_ADDR="203.0.113.10") for _ in range(3)]
    for browser in browsers:
        browser.force_login(UserFactory.create())

    def enter_code(browser: Client) -> Any:
        return browser.post("/o/device/", {"user_code": user_code_generate()})

    answered = [enter_code(browser).status_code for browser in browsers[:2]]
    with django_assert_num_queries(0):
        refused = enter_code(browsers[2])

    assert answered == [200, 200]  # the form again: no device waits for these codes
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert refused["Content-Type"] == "text/html; charset=utf-8"
    assert "Too many requests. Retry later." in refused.content.decode()


# --- cache outage ------------------------------------------------------------------------------------


def test_the_limits_open_while_redis_is_down(settings: Any, closed_cache: dict[str, Any]) -> None:
    settings.CACHES = closed_cache
    settings.RATELIMIT_OAUTH_TOKEN = "1/h"
    settings.RATELIMIT_OAUTH_TOKEN_PER_CLIENT = "1/h"
    client: RegisteredClient = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    data = {"grant_type": "client_credentials", **client.credentials()}

    answers = [form_post("/o/token/", data).status_code for _ in range(3)]

    assert answers == [200, 200, 200]
