"""Account e-mail: rendered from text and HTML templates, queued on commit, sent once by a Celery task."""

from __future__ import annotations

import json
import re
import smtplib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import allauth
import pytest
from allauth.account.models import EmailAddress
from celery import signals
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from accounts.emails import email_new_device_notice, email_queue, email_render
from accounts.models import User
from accounts.tasks import (
    EMAIL_SEND_MAX_RETRIES,
    email_send,
    email_send_error_is_transient,
    email_send_options,
)
from conftest import LogCapture

pytestmark = pytest.mark.django_db

RESET_URL = "http://testserver/accounts/password/reset/key/1-secret-reset-key/"
NOTICE_CONTEXT = {
    "timestamp": datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    "ip": "203.0.113.7",
    "user_agent": "Firefox/140",
}
TEMPLATES_DIR = Path(settings.BASE_DIR) / "templates"


def render_reset(to: str = "alice@example.com") -> dict[str, Any]:
    return email_render(
        template_prefix="account/email/password_reset_key",
        to=to,
        context={"password_reset_url": RESET_URL, "username": "alice"},
    )


def html_part(message: mail.EmailMessage) -> str:
    assert isinstance(message, mail.EmailMultiAlternatives)
    [(content, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return str(content)


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[mock.MagicMock]:
    """The real SMTP backend, talking to a fake smtplib.SMTP (the network edge)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "smtp.example.com", 587
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    with mock.patch("smtplib.SMTP", autospec=True) as smtp_class:
        yield smtp_class.return_value


@pytest.fixture
def retry_countdowns() -> Iterator[list[int]]:
    """The back-off (seconds) of every retry the task asks for; retries run at once, eagerly.

    With CELERY_TASK_EAGER_PROPAGATES an eager task's retry is raised instead of run.
    """
    countdowns: list[int] = []

    def record(reason: Any = None, **kwargs: Any) -> None:
        countdowns.append(reason.when)

    conf = email_send.app.conf
    propagates = conf.task_eager_propagates
    conf.task_eager_propagates = False
    signals.task_retry.connect(record, weak=False)
    try:
        yield countdowns
    finally:
        signals.task_retry.disconnect(record)
        conf.task_eager_propagates = propagates


# --- queued on commit ---------------------------------------------------------------------------


def test_email_queued_in_a_rolled_back_transaction_is_never_sent(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    def change_that_fails() -> None:
        with transaction.atomic():
            email_queue(
                template_prefix="account/email/password_changed",
                to="alice@example.com",
                context=NOTICE_CONTEXT,
            )
            raise RuntimeError("the change failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        change_that_fails()

    assert callbacks == []
    assert mail.outbox == []


def test_email_queued_in_a_transaction_is_sent_once_after_commit(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            email_queue(
                template_prefix="account/email/password_changed",
                to="alice@example.com",
                context=NOTICE_CONTEXT,
            )
        assert mail.outbox == []

    assert len(callbacks) == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert (message.subject, message.to, message.from_email) == (
        "[Identity] Password Changed",
        ["alice@example.com"],
        settings.DEFAULT_FROM_EMAIL,
    )
    assert message.extra_headers == {"Auto-Submitted": "auto-generated"}
    assert "Your password has been changed." in message.body
    assert "Your password has been changed." in html_part(message)


def test_email_publish_sends_a_json_payload_and_hides_it_from_celery_logs(
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with (
        mock.patch.object(email_send, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        email_queue(
            template_prefix="account/email/password_reset_key",
            to="alice@example.com",
            context={"password_reset_url": RESET_URL},
        )

    assert apply_async.call_count == 1
    (payload,) = apply_async.call_args.kwargs["args"]
    assert json.loads(json.dumps(payload)) == payload
    assert apply_async.call_args.kwargs["argsrepr"] == (
        f"(<e-mail {payload['id']} account/email/password_reset_key>,)"
    )
    assert RESET_URL not in apply_async.call_args.kwargs["argsrepr"]


def test_email_publish_logs_an_unreachable_broker_without_failing_the_committed_change(
    django_capture_on_commit_callbacks: Callable[..., Any], log_capture: LogCapture
) -> None:
    with (
        mock.patch.object(email_send, "apply_async", side_effect=OperationalError("connection refused")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        email_queue(
            template_prefix="account/email/password_reset_key",
            to="alice@example.com",
            context={"password_reset_url": RESET_URL},
        )

    assert mail.outbox == []
    assert "not queued" in log_capture.output
    assert "account/email/password_reset_key" in log_capture.output
    assert RESET_URL not in log_capture.output


# --- templates ----------------------------------------------------------------------------------

TEMPLATE_CASES = [
    (
        "account/email/email_confirmation",
        {"activate_url": "http://testserver/accounts/confirm-email/KEY/"},
        "[Identity] Please Confirm Your Email Address",
        "http://testserver/accounts/confirm-email/KEY/",
    ),
    (
        "account/email/email_confirmation_signup",
        {"activate_url": "http://testserver/accounts/confirm-email/KEY/"},
        "[Identity] Please Confirm Your Email Address",
        "http://testserver/accounts/confirm-email/KEY/",
    ),
    (
        "account/email/email_confirmation",
        {"code": "QX7PLM"},
        "[Identity] Please Confirm Your Email Address",
        "QX7PLM",
    ),
    (
        "account/email/password_reset_key",
        {"password_reset_url": RESET_URL, "username": "alice"},
        "[Identity] Password Reset Email",
        RESET_URL,
    ),
    ("account/email/password_reset_code", {"code": "RST123"}, "[Identity] Password Reset Code", "RST123"),
    ("account/email/login_code", {"code": "LGN456"}, "[Identity] Sign-In Code", "LGN456"),
    (
        "account/email/unknown_account",
        {"signup_url": "http://testserver/accounts/signup/"},
        "[Identity] Unknown Account",
        "http://testserver/accounts/signup/",
    ),
    (
        "account/email/account_already_exists",
        {"signup_url": "http://testserver/accounts/signup/", "password_reset_url": RESET_URL},
        "[Identity] Account Already Exists",
        RESET_URL,
    ),
    ("account/email/password_changed", NOTICE_CONTEXT, "[Identity] Password Changed", "203.0.113.7"),
    ("account/email/password_set", NOTICE_CONTEXT, "[Identity] Password Set", "203.0.113.7"),
    ("account/email/password_reset", NOTICE_CONTEXT, "[Identity] Password Reset", "203.0.113.7"),
    (
        "account/email/email_changed",
        {**NOTICE_CONTEXT, "from_email": "alice@example.com", "to_email": "alice@example.org"},
        "[Identity] Email Changed",
        "alice@example.org",
    ),
    ("account/email/email_confirm", NOTICE_CONTEXT, "[Identity] Email Confirmation", "203.0.113.7"),
    (
        "account/email/email_deleted",
        {**NOTICE_CONTEXT, "deleted_email": "old@example.com"},
        "[Identity] Email Removed",
        "old@example.com",
    ),
    ("mfa/email/totp_activated", NOTICE_CONTEXT, "[Identity] Authenticator App Activated", "203.0.113.7"),
    ("mfa/email/totp_deactivated", NOTICE_CONTEXT, "[Identity] Authenticator App Deactivated", "203.0.113.7"),
    (
        "mfa/email/recovery_codes_generated",
        NOTICE_CONTEXT,
        "[Identity] New Recovery Codes Generated",
        "203.0.113.7",
    ),
    ("mfa/email/webauthn_added", NOTICE_CONTEXT, "[Identity] Security Key Added", "203.0.113.7"),
    ("mfa/email/webauthn_removed", NOTICE_CONTEXT, "[Identity] Security Key Removed", "203.0.113.7"),
]


@pytest.mark.parametrize(("template_prefix", "context", "subject", "must_contain"), TEMPLATE_CASES)
def test_every_message_renders_a_text_body_and_an_html_alternative(
    user: User, template_prefix: str, context: dict[str, Any], subject: str, must_contain: str
) -> None:
    payload = email_render(template_prefix=template_prefix, to=user.email, context={"user": user, **context})

    assert payload["subject"] == subject
    assert payload["to"] == [user.email]
    assert payload["body"].startswith("Hello from Identity!")
    assert must_contain in payload["body"]
    [[html, mimetype]] = payload["alternatives"]
    assert mimetype == "text/html"
    assert html.startswith("<!DOCTYPE html>")
    assert "Hello from Identity!" in html
    assert must_contain in html
    assert "{{" not in html
    assert "{%" not in html


def test_every_allauth_message_has_an_html_template() -> None:
    allauth_templates = Path(allauth.__file__).parent / "templates"
    messages = {
        path.relative_to(allauth_templates).as_posix().removesuffix(".txt")
        for folder in ("account/email", "mfa/email")
        for path in (allauth_templates / folder).glob("*_message.txt")
        if not path.name.startswith("base_")
    }

    assert len(messages) == 18
    assert [name for name in sorted(messages) if not (TEMPLATES_DIR / f"{name}.html").is_file()] == []


def test_new_device_notice_is_sent_after_commit_with_device_ip_time_and_a_password_link(
    user: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        email_new_device_notice(
            user=user,
            device_label="Firefox on Linux <script>",
            ip_address="203.0.113.7",
            signed_in_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        )

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert (message.subject, message.to) == ("[Identity] New sign-in to your account", [user.email])
    password_change_url = "http://127.0.0.1:8000/accounts/password/change/"
    assert "- Device: Firefox on Linux <script>\n" in message.body
    assert "- IP address: 203.0.113.7\n" in message.body
    assert "- Time: 2 January 2026, 03:04 UTC\n" in message.body
    assert f"If this wasn't you, change your password now:\n\n{password_change_url}" in message.body
    html = html_part(message)
    assert "Firefox on Linux &lt;script&gt;" in html
    assert "<script>" not in html
    assert "2 January 2026, 03:04 UTC" in html
    assert f'href="{password_change_url}"' in html


def test_new_device_notice_takes_the_given_link_and_an_unknown_ip(
    user: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        email_new_device_notice(
            user=user,
            device_label="okhttp",
            ip_address=None,
            signed_in_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
            password_change_url="https://app.example.com/settings/password",
        )

    [message] = mail.outbox
    assert "- IP address: unknown\n" in message.body
    assert message.body.rstrip().endswith("Thank you for using Identity!\n127.0.0.1:8000")
    assert "https://app.example.com/settings/password" in message.body
    assert 'href="https://app.example.com/settings/password"' in html_part(message)


# --- the task: retries, permanent failures, idempotency -----------------------------------------


def test_email_send_retries_a_dropped_connection_with_back_off_and_sends_once(
    smtp_server: mock.MagicMock, retry_countdowns: list[int], log_capture: LogCapture
) -> None:
    smtp_server.sendmail.side_effect = [smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), {}]
    payload = render_reset()

    result = email_send.apply(args=(payload,))

    assert result.successful()
    assert smtp_server.sendmail.call_count == 2
    assert [call.args[:2] for call in smtp_server.sendmail.call_args_list] == [
        (settings.DEFAULT_FROM_EMAIL, ["alice@example.com"]),
    ] * 2
    assert len(retry_countdowns) == 1
    assert 0 <= retry_countdowns[0] <= 30
    assert cache.get(f"email-sent:{payload['id']}") == "sent"
    assert f"E-mail {payload['id']} (account/email/password_reset_key) failed (SMTPServerDisconnected)" in (
        log_capture.output
    )
    assert RESET_URL not in log_capture.output


def test_email_publish_with_eager_tasks_logs_a_transient_failure_instead_of_failing_the_request(
    smtp_server: mock.MagicMock,
    log_capture: LogCapture,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    smtp_server.sendmail.side_effect = smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    with django_capture_on_commit_callbacks(execute=True):
        email_queue(
            template_prefix="account/email/password_reset_key",
            to="alice@example.com",
            context={"password_reset_url": RESET_URL},
        )

    assert smtp_server.sendmail.call_count == 1
    assert (
        "(account/email/password_reset_key) not delivered; eager tasks cannot retry later"
        in log_capture.output
    )
    assert RESET_URL not in log_capture.output


def test_email_send_passes_the_configured_timeout_to_the_smtp_connection(smtp_server: mock.MagicMock) -> None:
    smtp_server.sendmail.return_value = {}

    email_send.apply(args=(render_reset(),))

    assert smtplib.SMTP.call_args.args == ("smtp.example.com", 587)  # type: ignore[attr-defined]
    assert smtplib.SMTP.call_args.kwargs["timeout"] == settings.EMAIL_TIMEOUT == 10  # type: ignore[attr-defined]


def test_email_send_gives_up_after_the_retry_bound_with_growing_capped_back_off(
    smtp_server: mock.MagicMock, retry_countdowns: list[int], log_capture: LogCapture
) -> None:
    smtp_server.sendmail.side_effect = smtplib.SMTPDataError(451, b"4.3.0 Try again later")
    payload = render_reset()

    result = email_send.apply(args=(payload,))

    assert result.successful()
    assert smtp_server.sendmail.call_count == 1 + EMAIL_SEND_MAX_RETRIES == 7
    assert len(retry_countdowns) == 6
    assert all(
        0 <= countdown <= bound
        for countdown, bound in zip(retry_countdowns, [30, 60, 120, 240, 480, 600], strict=True)
    )
    assert cache.get(f"email-sent:{payload['id']}") is None
    assert (
        f"E-mail {payload['id']} (account/email/password_reset_key) not delivered after 6 retries: "
        "SMTPDataError 451" in log_capture.output
    )


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPRecipientsRefused({"alice@example.com": (550, b"5.1.1 No such user")}),
        smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"),
        smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"),
    ],
)
def test_email_send_does_not_retry_a_permanent_failure_and_logs_it_without_the_body(
    smtp_server: mock.MagicMock,
    retry_countdowns: list[int],
    log_capture: LogCapture,
    error: smtplib.SMTPException,
) -> None:
    smtp_server.sendmail.side_effect = error
    smtp_server.login.side_effect = error if isinstance(error, smtplib.SMTPAuthenticationError) else None
    payload = render_reset()

    result = email_send.apply(args=(payload,))

    assert result.successful()
    assert retry_countdowns == []
    assert smtp_server.sendmail.call_count == 1
    code = getattr(error, "smtp_code", "")
    assert (
        f"E-mail {payload['id']} (account/email/password_reset_key) refused, not retried: "
        f"{type(error).__name__} {code}".strip()
    ) in log_capture.output
    assert RESET_URL not in log_capture.output
    assert payload["subject"] not in log_capture.output


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (smtplib.SMTPConnectError(554, b"No SMTP service here"), True),
        (smtplib.SMTPDataError(451, b"Try again later"), True),
        (smtplib.SMTPSenderRefused(421, b"Too many connections", "no-reply@example.com"), True),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"Mailbox busy")}), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (OSError(101, "Network is unreachable"), True),
        (
            smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"Busy"), "b@example.com": (550, b"No")}),
            False,
        ),
        (smtplib.SMTPRecipientsRefused({}), False),
        (smtplib.SMTPDataError(554, b"Rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"Bad credentials"), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), False),
    ],
)
def test_email_send_error_is_transient_only_for_4xx_replies_and_network_failures(
    error: OSError, transient: bool
) -> None:
    assert email_send_error_is_transient(error) is transient


def test_email_send_delivers_a_redelivered_payload_only_once() -> None:
    payload = json.loads(json.dumps(render_reset()))

    email_send.apply(args=(payload,))
    email_send.apply(args=(payload,))

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert RESET_URL in html_part(mail.outbox[0])


def test_email_send_skips_a_message_another_worker_is_sending() -> None:
    payload = render_reset()
    cache.add(f"email-sent:{payload['id']}", "sending", timeout=300)

    email_send.apply(args=(payload,))

    assert mail.outbox == []


def test_email_send_still_sends_when_the_cache_is_down(log_capture: LogCapture) -> None:
    payload = render_reset()
    with mock.patch("accounts.tasks.cache") as broken_cache:
        broken_cache.add.side_effect = broken_cache.set.side_effect = RedisConnectionError("refused")

        email_send.apply(args=(payload,))

    assert len(mail.outbox) == 1
    assert f"sending e-mail {payload['id']} without a duplicate guard" in log_capture.output


def test_email_send_options_show_celery_only_the_message_id_and_template() -> None:
    payload = render_reset()

    assert email_send_options(payload) == {
        "argsrepr": f"(<e-mail {payload['id']} account/email/password_reset_key>,)"
    }


# --- real flows over HTTP -----------------------------------------------------------------------


def test_signup_sends_one_verification_email_with_text_and_html(
    client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/_allauth/browser/v1/auth/signup",
            {"email": "new@example.com", "username": "new_user", "password": "a-Long-enough-pass-8812"},
            content_type="application/json",
        )

    assert response.status_code == 401
    flows = response.json()["data"]["flows"]
    assert next(flow for flow in flows if flow["id"] == "verify_email") == {
        "id": "verify_email",
        "is_pending": True,
    }
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert (message.subject, message.to) == (
        "[Identity] Please Confirm Your Email Address",
        ["new@example.com"],
    )
    link = re.search(r"http://testserver/accounts/confirm-email/[^/\s]+/", str(message.body))
    assert link is not None
    assert f'href="{link.group()}"' in html_part(message)
    assert "a-Long-enough-pass-8812" not in message.body


def test_password_reset_of_a_verified_user_sends_one_email_with_html(
    client: Client, user: User, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/password/reset/", {"email": user.email})

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert (message.subject, message.to) == ("[Identity] Password Reset Email", [user.email])
    link = re.search(r"http://testserver/accounts/password/reset/key/[^/\s]+/", str(message.body))
    assert link is not None
    assert f'href="{link.group()}"' in html_part(message)
    assert f"In case you forgot, your username is {user.username}." in html_part(message)
