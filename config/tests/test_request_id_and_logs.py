"""Request IDs on every response and log line; no secret ever reaches a log."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, totp_code, totp_enrol
from conftest import LogCapture

pytestmark = pytest.mark.django_db

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def test_a_request_without_id_gets_a_new_one(client: Client) -> None:
    first = client.get("/health/live")["X-Request-ID"]
    second = client.get("/health/live")["X-Request-ID"]

    assert GENERATED_ID.fullmatch(first)
    assert GENERATED_ID.fullmatch(second)
    assert first != second


@pytest.mark.parametrize("incoming", ["abc-123", "01J8Z6Q5KX:edge.7_lb", "f" * 128])
def test_a_sane_incoming_request_id_is_kept(client: Client, incoming: str) -> None:
    response = client.get("/health/live", HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["", "has space", "line\nbreak", "f" * 129, "semi;colon", "<script>", "-leading-dash", "ünïcode"],
)
def test_an_insane_incoming_request_id_is_replaced(client: Client, incoming: str) -> None:
    response = client.get("/health/live", HTTP_X_REQUEST_ID=incoming)

    assert GENERATED_ID.fullmatch(response["X-Request-ID"])


def test_every_log_line_of_a_request_carries_its_id(client: Client, log_capture: LogCapture) -> None:
    client.get("/no-such-page/", HTTP_X_REQUEST_ID="trace-me-42")
    client.get("/api/v1/no-such-thing/", HTTP_X_REQUEST_ID="other-7")

    lines = [line.split(" ", 3)[3] for line in log_capture.output.splitlines() if "django.request" in line]
    assert lines == [
        "[trace-me-42] django.request: Not Found: /no-such-page/",
        "[other-7] django.request: Not Found: /api/v1/no-such-thing/",
    ]


def test_production_logs_are_json_lines_with_the_request_id(client: Client, log_capture: LogCapture) -> None:
    log_capture.use("json")

    client.get("/no-such-page/?token=abc123secret", HTTP_X_REQUEST_ID="json-trace-1")

    records = [json.loads(line) for line in log_capture.output.splitlines()]
    not_found = [record for record in records if record["logger"] == "django.request"]
    assert len(not_found) == 1
    assert not_found[0]["request_id"] == "json-trace-1"
    assert not_found[0]["level"] == "WARNING"
    assert not_found[0]["message"] == "Not Found: /no-such-page/"
    assert not_found[0]["request"] == "GET /no-such-page/"
    assert "abc123secret" not in log_capture.output


SECRET_MESSAGES: list[tuple[str, tuple[Any, ...], str]] = [
    ("login with password=%s", ("hunter2-Secret",), "hunter2-Secret"),
    ("payload %s", ({"username": "bob", "password": "p4ssw0rd!"},), "p4ssw0rd!"),
    ("payload %s", ({"refresh_token": "r-token-value", "client_secret": "cs-value"},), "r-token-value"),
    ("payload %s", ({"client_secret": "cs-value-9"},), "cs-value-9"),
    ("header Authorization: Bearer %s", ("abcdefghijklmnop.qrstu",), "abcdefghijklmnop.qrstu"),
    ("header %s", ("Basic dXNlcjpwYXNzd29yZA==",), "dXNlcjpwYXNzd29yZA=="),
    ("jwt %s", ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl",), "c2lnbmF0dXJlLXZhbHVl"),
    ("connecting to %s", ("postgres://app:db-pass-77@db:5432/app",), "db-pass-77"),
    ("redirect %s", ("https://client.example/cb?code=auth-code-55&state=xyz",), "auth-code-55"),
    ("cookie %s", ("sessionid=sess-key-123; csrftoken=csrf-val-456",), "sess-key-123"),
    ("cookie %s", ("sessionid=sess-key-123; csrftoken=csrf-val-456",), "csrf-val-456"),
    ("session_key=%s", ("k3y-of-session",), "k3y-of-session"),
    ("api_key: %s", ("ak-000111",), "ak-000111"),
    ("otp %s", ("otp_code=123456",), "123456"),
]


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(("message", "args", "secret"), SECRET_MESSAGES)
def test_secrets_never_reach_a_log_line(
    log_capture: LogCapture, log_format: str, message: str, args: tuple[Any, ...], secret: str
) -> None:
    log_capture.use(log_format)

    logging.getLogger("accounts.services").warning(message, *args)

    assert log_capture.output.strip()
    assert secret not in log_capture.output
    assert "[REDACTED]" in log_capture.output


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_in_extras_and_tracebacks_are_redacted(log_capture: LogCapture, log_format: str) -> None:
    log_capture.use(log_format)
    try:
        raise ValueError("could not parse password=tb-secret-1 from form")
    except ValueError:
        logging.getLogger("accounts").exception(
            "sign-in failed",
            extra={"password": "extra-secret-2", "access_token": "extra-secret-3", "user": "bob"},
        )

    output = log_capture.output
    for secret in ("tb-secret-1", "extra-secret-2", "extra-secret-3"):
        assert secret not in output
    assert "ValueError" in output
    assert "sign-in failed" in output


def test_a_failed_admin_sign_in_logs_no_password(client: Client, log_capture: LogCapture, user: User) -> None:
    log_capture.use("json")
    user.is_staff = True
    user.save()
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    secret = totp_enrol(user)
    code = totp_code(secret)
    wrong_code = f"{(int(code) + 1) % 10**6:06d}"
    admin_sign_in = "/accounts/login/?next=/admin/"  # where /admin/login/ sends staff

    client.post("/admin/login/", {"username": user.username, "password": "Wrong-Pass-0987"})
    client.post(admin_sign_in, {"login": user.username, "password": "Wrong-Pass-0987"})
    client.post(admin_sign_in, {"login": user.username, "password": DEFAULT_PASSWORD})
    client.post("/accounts/2fa/authenticate/", {"code": wrong_code})
    client.post("/accounts/2fa/authenticate/", {"code": code})

    assert "_auth_user_id" in client.session  # the sign-in went through, logging as it went
    for secret_value in ("Wrong-Pass-0987", DEFAULT_PASSWORD, secret):
        assert secret_value not in log_capture.output
    for typed_code in (wrong_code, code):  # not as part of a longer number (a duration, say)
        assert re.search(rf"(?<!\d){typed_code}(?!\d)", log_capture.output) is None


def test_an_outage_is_one_line_per_interval_and_other_records_keep_their_message(
    log_capture: LogCapture,
) -> None:
    """Finding 8 of issue 13: Django's per-request record of a failure the outage caused becomes
    one line per dependency and interval, with a count; a record of our own about an outage error
    keeps its message (what was not done) and loses only the traceback."""
    from kombu.exceptions import OperationalError as BrokerOperationalError

    from config.outages import outage_log

    outage_log.reset()
    error = BrokerOperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    for _ in range(5):
        try:
            raise error
        except BrokerOperationalError:
            logging.getLogger("django.request").exception("Internal Server Error: /api/v1/users/me/")
            logging.getLogger("accounts.emails").exception("E-mail %s not queued", "abc123")

    lines = log_capture.output.splitlines()
    outage_lines = [line for line in lines if "config.outages" in line]
    assert len(outage_lines) == 1
    assert "broker unavailable: OperationalError: Error 111 connecting" in outage_lines[0]
    assert sum("E-mail abc123 not queued (OperationalError: Error 111" in line for line in lines) == 5
    assert "Traceback" not in log_capture.output
    assert "Internal Server Error" not in log_capture.output
    outage_log.reset()
