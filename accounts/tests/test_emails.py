"""Account e-mail: rendered from text and HTML templates, recorded as an outbox job with the change that
caused it, sent once by a Celery task (accounts/tests/test_outbox.py covers the broker side)."""

from __future__ import annotations

import email
import json
import re
import shutil
import smtplib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import allauth
import pytest
from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone

from accounts.emails import email_new_device_notice, email_queue, email_render
from accounts.models import OutboxJob, User
from accounts.services.outbox import job_enqueue, jobs_relay
from accounts.tasks import EMAIL_SEND_MAX_ATTEMPTS, EMAIL_TASK, email_send, email_send_error_is_transient
from config.tests.faults import RedisServer, scratch_folder
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


@pytest.fixture(scope="module")
def stopped_redis() -> Iterator[RedisServer]:
    """A real Redis, started and then stopped: nothing listens on its port any more."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (CI installs it)")
    folder = scratch_folder("emails-cache-")
    server = RedisServer(folder).start()
    server.stop()
    yield server
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def stopped_cache(stopped_redis: RedisServer) -> dict[str, Any]:
    """The production cache settings (errors ignored) pointing at the stopped Redis."""
    return {"default": {**settings.CACHES["default"], "LOCATION": stopped_redis.url}}


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
    assert OutboxJob.objects.count() == 0


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
    job = OutboxJob.objects.get()
    assert message.extra_headers == {
        "Auto-Submitted": "auto-generated",
        "Message-ID": f"<{job.pk}@127.0.0.1>",
    }
    assert "Your password has been changed." in message.body
    assert "Your password has been changed." in html_part(message)
    # Sent: the job is done and its message (links, codes) no longer stored.
    assert (job.state, job.attempts, job.arguments, job.label) == (
        OutboxJob.State.DONE,
        1,
        {},
        "account/email/password_changed",
    )


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


def queued_job(payload: dict[str, Any] | None = None) -> OutboxJob:
    """An e-mail job as `email_queue` records it; its publish after commit never runs here."""
    payload = payload or render_reset()
    return job_enqueue(
        task=EMAIL_TASK,
        arguments=payload,
        label=payload["template_prefix"],
        job_id=uuid.UUID(payload["id"]),
        max_attempts=EMAIL_SEND_MAX_ATTEMPTS,
    )


def run(job: OutboxJob) -> None:
    """What a worker does with the job's message (a message carries only the job's ID)."""
    email_send.apply(args=(str(job.pk),))


def make_due(job: OutboxJob) -> None:
    OutboxJob.objects.filter(pk=job.pk).update(due_at=timezone.now() - timedelta(minutes=1))


def message_ids(smtp: mock.MagicMock) -> list[str]:
    return [email.message_from_bytes(call.args[2])["Message-ID"] for call in smtp.sendmail.call_args_list]


def test_email_send_retries_a_dropped_connection_after_a_back_off_and_sends_once(
    smtp_server: mock.MagicMock, log_capture: LogCapture
) -> None:
    smtp_server.sendmail.side_effect = [smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), {}]
    job = queued_job()
    before = timezone.now()

    run(job)

    job.refresh_from_db()
    assert (job.state, job.attempts, job.last_error) == (OutboxJob.State.PENDING, 1, "SMTPServerDisconnected")
    assert before <= job.due_at <= timezone.now() + timedelta(seconds=30)
    assert (
        f"E-mail {job.pk} (account/email/password_reset_key) failed (SMTPServerDisconnected); retry 1 in"
        in (log_capture.output)
    )
    run(job)  # a message arriving before the back-off ends changes nothing
    assert smtp_server.sendmail.call_count == 1

    make_due(job)
    assert jobs_relay()["published"] == 1  # eager tasks: the relay's publish runs it

    job.refresh_from_db()
    assert (job.state, job.attempts, job.arguments) == (OutboxJob.State.DONE, 2, {})
    assert [call.args[:2] for call in smtp_server.sendmail.call_args_list] == [
        (settings.DEFAULT_FROM_EMAIL, ["alice@example.com"]),
    ] * 2
    # RFC 5322 §3.6.4: one message, one Message-ID, however often it is tried.
    assert message_ids(smtp_server) == [f"<{job.pk}@127.0.0.1>"] * 2
    assert RESET_URL not in log_capture.output


def test_email_queued_with_eager_tasks_fails_a_transient_failure_instead_of_failing_the_request(
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

    job = OutboxJob.objects.get()
    assert (job.state, job.arguments) == (OutboxJob.State.FAILED, {})
    assert smtp_server.sendmail.call_count == 1
    assert (
        f"Job {job.pk} (accounts.email_send account/email/password_reset_key) not done; "
        "eager tasks cannot retry later" in log_capture.output
    )
    assert RESET_URL not in log_capture.output


def test_email_send_passes_the_configured_timeout_to_the_smtp_connection(smtp_server: mock.MagicMock) -> None:
    smtp_server.sendmail.return_value = {}

    run(queued_job())

    assert smtplib.SMTP.call_args.args == ("smtp.example.com", 587)  # type: ignore[attr-defined]
    assert smtplib.SMTP.call_args.kwargs["timeout"] == settings.EMAIL_TIMEOUT == 10  # type: ignore[attr-defined]


def test_email_send_gives_up_after_its_attempts_with_growing_capped_back_off(
    smtp_server: mock.MagicMock, log_capture: LogCapture
) -> None:
    smtp_server.sendmail.side_effect = smtplib.SMTPDataError(451, b"4.3.0 Try again later")
    job = queued_job()
    waits = []

    for _ in range(EMAIL_SEND_MAX_ATTEMPTS):
        started = timezone.now()
        run(job)
        job.refresh_from_db()
        if job.state == OutboxJob.State.PENDING:
            waits.append((job.due_at - started).total_seconds())
            make_due(job)

    assert smtp_server.sendmail.call_count == EMAIL_SEND_MAX_ATTEMPTS == 7
    assert len(waits) == 6
    assert all(
        0 <= wait <= bound + 1 for wait, bound in zip(waits, [30, 60, 120, 240, 480, 600], strict=True)
    ), waits
    assert (job.state, job.attempts, job.arguments, job.last_error) == (
        OutboxJob.State.FAILED,
        7,
        {},
        "SMTPDataError 451",
    )
    assert (
        f"E-mail {job.pk} (account/email/password_reset_key) not delivered after 7 attempts: "
        "SMTPDataError 451" in log_capture.output
    )
    make_due(job)
    run(job)
    assert smtp_server.sendmail.call_count == 7


@pytest.mark.parametrize(
    "error",
    [
        smtplib.SMTPRecipientsRefused({"alice@example.com": (550, b"5.1.1 No such user")}),
        smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"),
        smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"),
    ],
)
def test_email_send_does_not_retry_a_permanent_failure_and_logs_it_without_the_body(
    smtp_server: mock.MagicMock, log_capture: LogCapture, error: smtplib.SMTPException
) -> None:
    smtp_server.sendmail.side_effect = error
    smtp_server.login.side_effect = error if isinstance(error, smtplib.SMTPAuthenticationError) else None
    job = queued_job()

    run(job)

    job.refresh_from_db()
    code = getattr(error, "smtp_code", "")
    reason = f"{type(error).__name__} {code}".strip()
    assert (job.state, job.attempts, job.arguments, job.last_error) == (
        OutboxJob.State.FAILED,
        1,
        {},
        f"refused: {reason}",
    )
    assert smtp_server.sendmail.call_count == 1
    assert f"E-mail {job.pk} (account/email/password_reset_key) refused, not retried: {reason}" in (
        log_capture.output
    )
    assert RESET_URL not in log_capture.output
    assert "[Identity] Password Reset Email" not in log_capture.output


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


def test_email_send_delivers_a_message_delivered_twice_once(log_capture: LogCapture) -> None:
    job = queued_job()

    run(job)
    run(job)

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert RESET_URL in html_part(mail.outbox[0])
    assert (
        f"E-mail {job.pk} (account/email/password_reset_key) not claimed, its job is done; skipped"
        in log_capture.output
    )


def test_email_send_skips_a_message_another_worker_is_sending() -> None:
    job = queued_job()
    lease = timezone.now() + timedelta(minutes=5)
    OutboxJob.objects.filter(pk=job.pk).update(
        state=OutboxJob.State.RUNNING, attempts=1, lease_expires_at=lease
    )

    run(job)

    assert mail.outbox == []
    job.refresh_from_db()
    assert (job.state, job.attempts, job.lease_expires_at) == (OutboxJob.State.RUNNING, 1, lease)


def test_email_send_takes_over_a_message_whose_worker_was_lost_once_its_lease_ended() -> None:
    job = queued_job()
    OutboxJob.objects.filter(pk=job.pk).update(
        state=OutboxJob.State.RUNNING, attempts=1, lease_expires_at=timezone.now()
    )

    run(job)

    assert len(mail.outbox) == 1
    job.refresh_from_db()
    assert (job.state, job.attempts) == (OutboxJob.State.DONE, 2)


def test_email_send_sends_a_message_queued_before_the_outbox_once() -> None:
    """Messages published by the previous release carry the rendered payload itself."""
    payload = json.loads(json.dumps(render_reset()))

    email_send.apply(args=(payload,))
    email_send.apply(args=(payload,))

    assert len(mail.outbox) == 1
    job = OutboxJob.objects.get()
    assert (str(job.pk), job.state, job.label) == (
        str(uuid.UUID(payload["id"])),
        OutboxJob.State.DONE,
        "account/email/password_reset_key",
    )


def test_an_email_is_sent_exactly_once_while_the_cache_is_unreachable(
    stopped_cache: dict[str, Any], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    """Issue 13, finding 3: a cache that answers nothing (its errors ignored, whatever its client
    then returns) neither drops nor duplicates a message: the claim is kept in PostgreSQL."""
    with override_settings(CACHES=stopped_cache):
        cache.set("probe", 1)
        assert cache.get("probe") is None  # the cache really keeps nothing
        with django_capture_on_commit_callbacks(execute=True):
            email_queue(
                template_prefix="account/email/password_reset_key",
                to="alice@example.com",
                context={"password_reset_url": RESET_URL},
            )
        job = OutboxJob.objects.get()
        run(job)  # the same message delivered again

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert OutboxJob.objects.get().state == OutboxJob.State.DONE


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
