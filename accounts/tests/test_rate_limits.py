"""Per-IP limits on the sign-in, sign-up, reset, verification and refresh flows, and cache outages."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.models import AccountLockout, User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, totp_code, totp_enrol
from config.outages import outage_log

pytestmark = pytest.mark.django_db

WRONG_PASSWORD = "not-the-password-at-all"
# The admin's sign-in: /admin/login/ only redirects here (secure_admin_login), checking no password.
ADMIN_SIGN_IN_URL = "/accounts/login/?next=%2Fadmin%2F"
THROTTLED_BODY = {
    "type": "client_error",
    "errors": [{"code": "throttled", "detail": "Too many requests. Retry later.", "attr": None}],
}


@pytest.fixture
def member() -> User:
    user = UserFactory.create(is_staff=True)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


def json_post(client: Client, path: str, data: dict[str, Any], **extra: Any) -> Any:
    return client.post(path, data, content_type="application/json", **extra)


def assert_throttled(response: Any, *, api: bool) -> None:
    """A refusal by a per-IP limit. Tests use hourly rates: a fixed window never ends mid-test."""
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 3600
    if api:
        assert response["Content-Type"] == "application/json"
        assert response.json() == THROTTLED_BODY
    else:
        assert response["Content-Type"] == "text/html; charset=utf-8"
        assert "Too many requests. Retry later." in response.content.decode()


# (path, rate setting, request body, JSON?) of every protected endpoint.
PROTECTED = [
    ("/accounts/login/", "RATELIMIT_SIGNIN", {"login": "someone@example.com", "password": "x"}, False),
    (ADMIN_SIGN_IN_URL, "RATELIMIT_SIGNIN", {"login": "someone", "password": "x"}, False),
    ("/accounts/2fa/authenticate/", "RATELIMIT_SIGNIN", {"code": "123456"}, False),
    ("/accounts/2fa/reauthenticate/", "RATELIMIT_SIGNIN", {"code": "123456"}, False),
    ("/accounts/reauthenticate/", "RATELIMIT_SIGNIN", {"password": "x"}, False),
    ("/accounts/signup/", "RATELIMIT_SIGNUP", {"email": "new@example.com"}, False),
    ("/accounts/password/reset/", "RATELIMIT_PASSWORD_RESET", {"email": "someone@example.com"}, False),
    *[
        (f"/_allauth/{client}/v1/auth/{endpoint}", setting, body, True)
        for client in ("app", "browser")
        for endpoint, setting, body in (
            ("login", "RATELIMIT_SIGNIN", {"email": "someone@example.com", "password": "x"}),
            ("2fa/authenticate", "RATELIMIT_SIGNIN", {"code": "123456"}),
            ("2fa/reauthenticate", "RATELIMIT_SIGNIN", {"code": "123456"}),
            ("reauthenticate", "RATELIMIT_SIGNIN", {"password": "x"}),
            ("signup", "RATELIMIT_SIGNUP", {"email": "new@example.com"}),
            ("password/request", "RATELIMIT_PASSWORD_RESET", {"email": "someone@example.com"}),
            ("email/verify/resend", "RATELIMIT_VERIFICATION_RESEND", {}),
        )
    ],
    ("/_allauth/app/v1/tokens/refresh", "RATELIMIT_TOKEN_REFRESH", {"refresh_token": "x"}, True),
    ("/api/v1/auth/token/refresh/", "RATELIMIT_TOKEN_REFRESH", {"refresh": "x"}, True),
]


@pytest.mark.parametrize(("path", "rate_setting", "body", "is_json"), PROTECTED)
def test_each_protected_path_is_limited_per_ip(
    path: str, rate_setting: str, body: dict[str, Any], is_json: bool, settings: Any
) -> None:
    setattr(settings, rate_setting, "2/h")
    client = Client()
    post = (lambda: json_post(client, path, body)) if is_json else (lambda: client.post(path, body))

    answers = [post().status_code for _ in range(2)]

    assert 429 not in answers
    assert_throttled(post(), api=is_json)
    assert_throttled(Client(REMOTE_ADDR="127.0.0.1").post(path, body), api=is_json)
    other_address = Client(REMOTE_ADDR="198.51.100.20")
    other_answer = json_post(other_address, path, body) if is_json else other_address.post(path, body)
    assert other_answer.status_code != 429


def test_flows_have_separate_budgets(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "1/h"
    client = Client()
    client.post("/accounts/login/", {"login": "someone@example.com", "password": "x"})

    assert client.post("/accounts/password/reset/", {"email": "someone@example.com"}).status_code != 429
    # The admin's sign-in, the second factor and re-authentication share the sign-in budget.
    assert_throttled(client.post(ADMIN_SIGN_IN_URL, {"login": "someone", "password": "x"}), api=False)
    assert_throttled(client.post("/accounts/2fa/authenticate/", {"code": "123456"}), api=False)
    assert_throttled(client.post("/accounts/reauthenticate/", {"password": "x"}), api=False)


def test_only_post_is_limited(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "1/h"
    client = Client()

    answers = [client.get("/accounts/login/").status_code for _ in range(3)]

    assert answers == [200, 200, 200]


def test_verification_resend_page_is_limited_only_for_resends(
    member: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.RATELIMIT_VERIFICATION_RESEND = "1/h"
    EmailAddress.objects.create(user=member, email="second@example.com", primary=False, verified=False)
    totp_enrol(member)  # staff: without a second factor every page sends them to set one up
    client = Client()
    client.force_login(member)
    resend = {"action_send": "", "email": "second@example.com"}

    for _ in range(3):
        assert (
            client.post("/accounts/email/", {"action_primary": "", "email": member.email}).status_code == 302
        )
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/accounts/email/", resend).status_code == 302
    assert len(mail.outbox) == 1

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/accounts/email/", resend)

    assert_throttled(response, api=False)
    assert callbacks == []
    assert len(mail.outbox) == 1


def test_refused_sign_in_counts_no_failure_and_signs_nobody_in(member: User, settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "1/h"
    client = Client()
    json_post(client, "/_allauth/app/v1/auth/login", {"email": member.email, "password": WRONG_PASSWORD})
    lockout = AccountLockout.objects.get(user=member)

    response = json_post(
        client, "/_allauth/app/v1/auth/login", {"email": member.email, "password": DEFAULT_PASSWORD}
    )

    assert_throttled(response, api=True)
    member.refresh_from_db()
    assert member.last_login is None
    assert AccountLockout.objects.get(user=member).failed_attempts == lockout.failed_attempts == 1


def test_refused_sign_up_creates_no_account(settings: Any) -> None:
    settings.RATELIMIT_SIGNUP = "1/h"
    client = Client()
    signup = {
        "email": "first@example.com",
        "username": "first",
        "password": "a-long-enough-password",
    }
    assert json_post(client, "/_allauth/browser/v1/auth/signup", signup).status_code == 401
    users = User.objects.count()

    response = json_post(
        client,
        "/_allauth/browser/v1/auth/signup",
        {**signup, "email": "second@example.com", "username": "second"},
    )

    assert_throttled(response, api=True)
    assert User.objects.count() == users
    assert not User.objects.filter(username="second").exists()


def test_refused_password_reset_sends_no_mail(
    member: User, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.RATELIMIT_PASSWORD_RESET = "1/h"
    client = Client()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/accounts/password/reset/", {"email": member.email}).status_code == 302
    assert len(mail.outbox) == 1

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post("/accounts/password/reset/", {"email": member.email})

    assert_throttled(response, api=False)
    assert callbacks == []
    assert len(mail.outbox) == 1


# --- client addresses ---------------------------------------------------------------------------


def test_forwarded_for_from_an_untrusted_peer_is_ignored(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "2/h"
    settings.TRUSTED_PROXIES = []
    client = Client()
    body = {"login": "someone@example.com", "password": "x"}

    answers = [
        client.post("/accounts/login/", body, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(1, 4)
    ]

    assert answers[:2] == [200, 200]
    assert answers[2] == 429


def test_forwarded_for_from_a_trusted_proxy_names_the_client(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "2/h"
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    client = Client()
    body = {"login": "someone@example.com", "password": "x"}

    def post_from(address: str) -> int:
        return client.post("/accounts/login/", body, HTTP_X_FORWARDED_FOR=address).status_code

    assert [post_from("203.0.113.7"), post_from("203.0.113.7")] == [200, 200]
    assert post_from("203.0.113.7") == 429
    assert post_from("203.0.113.8") == 200
    # A client-supplied hop in front of the proxy's own does not give the client a fresh budget.
    assert post_from("198.51.100.99, 203.0.113.7") == 429


# --- cache outage -----------------------------------------------------------------------------


@pytest.fixture
def redis_down(settings: Any) -> None:
    """The cache is a django-redis cache on a local port where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                # As in production (config/cache.py): failures go to the outage log.
                "CLIENT_CLASS": "config.cache.CacheClient",
                "REDIS_CLIENT_CLASS": "config.cache.CircuitBreakerRedis",
            },
        }
    }


@pytest.mark.usefixtures("redis_down")
@pytest.mark.parametrize(
    ("path", "field", "by_username", "is_json", "signed_in_status", "failed_status"),
    [
        ("/accounts/login/", "login", False, False, 302, 200),
        (ADMIN_SIGN_IN_URL, "login", True, False, 302, 200),
        ("/_allauth/app/v1/auth/login", "email", False, True, 200, 400),
        ("/_allauth/browser/v1/auth/login", "email", False, True, 200, 400),
    ],
)
def test_sign_in_works_while_redis_is_down(
    path: str,
    field: str,
    by_username: bool,
    is_json: bool,
    signed_in_status: int,
    failed_status: int,
    member: User,
    caplog: pytest.LogCaptureFixture,
) -> None:
    identifier = member.username if by_username else member.email
    client = Client()

    def sign_in(password: str) -> Any:
        data = {field: identifier, "password": password}
        return json_post(client, path, data) if is_json else client.post(path, data)

    outage_log.reset()
    with caplog.at_level(logging.WARNING):
        failed = sign_in(WRONG_PASSWORD)
    outage_log.reset()
    assert failed.status_code == failed_status
    # django-redis turns the outage into cache misses (DJANGO_REDIS_IGNORE_EXCEPTIONS); the outage
    # log says so once (config/cache.py).
    assert "cache unavailable: ConnectionError" in caplog.text
    assert "Connection refused" in caplog.text
    assert AccountLockout.objects.get(user=member).failed_attempts == 1

    assert sign_in(DEFAULT_PASSWORD).status_code == signed_in_status
    member.refresh_from_db()
    assert member.last_login is not None
    assert AccountLockout.objects.get(user=member).failed_attempts == 0


@pytest.mark.usefixtures("redis_down")
def test_staff_sign_in_to_the_admin_with_a_second_factor_while_redis_is_down(member: User) -> None:
    """The code check keeps its replay protection in the database, not in the cache."""
    secret = totp_enrol(member)
    client = Client()
    code = totp_code(secret)

    password = client.post(ADMIN_SIGN_IN_URL, {"login": member.username, "password": DEFAULT_PASSWORD})
    signed_in = client.post("/accounts/2fa/authenticate/", {"code": code})

    assert password["Location"] == "/accounts/2fa/authenticate/"
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    other = Client()
    other.post(ADMIN_SIGN_IN_URL, {"login": member.username, "password": DEFAULT_PASSWORD})
    replayed = other.post("/accounts/2fa/authenticate/", {"code": code})
    assert replayed.status_code == 200  # the page again, with its error: a code works once
    assert "_auth_user_id" not in other.session


@pytest.mark.usefixtures("redis_down")
def test_lockout_keeps_working_from_the_database_while_redis_is_down(
    member: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    client = Client()
    for _ in range(5):
        response = json_post(
            client, "/_allauth/app/v1/auth/login", {"email": member.email, "password": WRONG_PASSWORD}
        )
        assert response.status_code == 400

    response = json_post(
        client, "/_allauth/app/v1/auth/login", {"email": member.email, "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert response.json()["errors"][0]["code"] == "throttled"


@pytest.mark.usefixtures("redis_down")
def test_unknown_identifiers_are_not_locked_while_redis_is_down() -> None:
    """The documented fallback: their counters live in the cache only."""
    client = Client()

    answers = [
        json_post(
            client, "/_allauth/app/v1/auth/login", {"email": "nobody@example.com", "password": WRONG_PASSWORD}
        ).status_code
        for _ in range(6)
    ]

    assert answers == [400] * 6
