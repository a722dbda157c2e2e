"""Second factors on allauth's browser pages, end to end: sign-in with each factor, refusals,
enrolment and recovery codes, step-up and the lockout (docs/decisions/0012-mfa-and-step-up.md)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.contrib.auth import SESSION_KEY
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.models import AccountLockout, EmailCode, Role, User
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import (
    DEFAULT_PASSWORD,
    UserFactory,
    mark_reauthenticated,
    recovery_codes_enrol,
    totp_code,
    totp_enrol,
)
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

LOGIN_URL = "/accounts/login/"
SECOND_FACTOR_URL = "/accounts/2fa/authenticate/"
EMAIL_CODE_URL = "/accounts/2fa/email-code/"
ACTIVATE_TOTP_URL = "/accounts/2fa/totp/activate/"
DEACTIVATE_TOTP_URL = "/accounts/2fa/totp/deactivate/"
RECOVERY_CODES_URL = "/accounts/2fa/recovery-codes/"
GENERATE_RECOVERY_CODES_URL = "/accounts/2fa/recovery-codes/generate/"
REAUTHENTICATE_URL = "/accounts/reauthenticate/"
MFA_REAUTHENTICATE_URL = "/accounts/2fa/reauthenticate/"
EMAIL_BUTTON = "E-mail me a code instead"
EMAIL_CODE_SUBJECT = "Your sign-in code"


# --- people ------------------------------------------------------------------------------------


def member(**fields: Any) -> User:
    """A plain user with a verified primary address, as sign-up and verification leave them."""
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


@pytest.fixture
def alice() -> User:
    return member(username="alice")


@pytest.fixture
def alice_secret(alice: User) -> str:
    return totp_enrol(alice)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Stop the time the lockout reads (timezone.now), so that Retry-After is exact."""
    frozen = timezone.now()

    def advance(by: timedelta) -> None:
        nonlocal frozen
        frozen += by

    monkeypatch.setattr(timezone, "now", lambda: frozen)
    return advance


# --- reading the trail, the session and the pages ----------------------------------------------


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def code_errors(response: Any) -> list[str]:
    """The error codes of the second-factor form on a re-rendered page."""
    assert response.status_code == 200
    return [error.code for error in response.context["form"].errors.as_data().get("code", [])]


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def emailed_code() -> str:
    [message] = [message for message in mail.outbox if message.subject.endswith(EMAIL_CODE_SUBJECT)]
    match = re.search(r"^(\d{6})$", str(message.body), re.MULTILINE)
    assert match is not None, message.body
    return match.group(1)


@contextmanager
def committed(capture: Callable[..., Any]) -> Iterator[None]:
    """Run what the request queued for after its commit (allauth's signals, e-mails) at once."""
    with capture(execute=True):
        yield


# --- flows -------------------------------------------------------------------------------------


def password_step(client: Client, user: User, *, next_url: str = "") -> Any:
    path = f"{LOGIN_URL}?next={next_url}" if next_url else LOGIN_URL
    return client.post(path, {"login": user.username, "password": DEFAULT_PASSWORD})


def second_factor(client: Client, code: str) -> Any:
    return client.post(SECOND_FACTOR_URL, {"code": code})


def sign_in_with_totp(client: Client, user: User, secret: str) -> None:
    assert password_step(client, user)["Location"] == SECOND_FACTOR_URL
    assert second_factor(client, totp_code(secret)).status_code == 302
    assert signed_in_user_id(client) == str(user.pk)


# --- sign-in with each factor ------------------------------------------------------------------


def test_the_password_alone_does_not_sign_in_a_user_with_totp(
    client: Client, alice: User, alice_secret: str
) -> None:
    response = password_step(client, alice)

    assert response.status_code == 302
    assert response["Location"] == SECOND_FACTOR_URL
    assert signed_in_user_id(client) is None
    page = client.get(SECOND_FACTOR_URL)
    assert page.status_code == 200
    assert "Two-Factor Authentication" in page.content.decode()
    assert client.get("/accounts/email/")["Location"] == "/accounts/login/?next=/accounts/email/"
    assert events("accounts.user.signed_in") == []


def test_a_totp_code_computed_from_the_secret_signs_in(
    client: Client, alice: User, alice_secret: str, django_capture_on_commit_callbacks: Any
) -> None:
    password_step(client, alice, next_url="/accounts/email/")
    step = int(time.time()) // 30
    code = format_hotp_value(hotp_value(alice_secret, step))  # what the user's app shows now

    with committed(django_capture_on_commit_callbacks):
        response = second_factor(client, code)

    assert response.status_code == 302
    assert response["Location"] == "/accounts/email/"
    assert signed_in_user_id(client) == str(alice.pk)
    assert client.get("/accounts/email/").status_code == 200
    totp = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)
    assert totp.data["last_accepted_counter"] == step  # RFC 6238 §5.2: that step and older ones are dead
    [authenticated] = events("accounts.mfa.authenticated")
    assert (authenticated.actor_id, authenticated.target_id, authenticated.outcome) == (
        str(alice.pk),
        str(alice.pk),
        "success",
    )
    assert authenticated.metadata == {
        "type": "totp",
        "authenticator_id": totp.pk,
        "reauthentication": False,
        "passwordless": False,
    }
    [signed_in] = events("accounts.user.signed_in")
    assert signed_in.actor_id == str(alice.pk)
    assert events("accounts.mfa.authentication_failed") == []


@pytest.mark.parametrize("steps_from_now", [-1, 1])
def test_a_code_of_the_step_before_or_after_is_accepted(
    client: Client, alice: User, alice_secret: str, steps_from_now: int
) -> None:
    password_step(client, alice)

    response = second_factor(client, totp_code(alice_secret, steps_from_now=steps_from_now))

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("wrong", id="wrong"),
        pytest.param("expired", id="two-steps-old"),
        pytest.param("future", id="two-steps-ahead"),
        pytest.param("12345", id="five-digits"),
        pytest.param("1234567", id="seven-digits"),
        pytest.param("abcdef", id="letters"),
        pytest.param("12 34 5x", id="garbage"),
        pytest.param(" ", id="blank"),
    ],
)
def test_wrong_expired_and_malformed_codes_re_render_the_page_and_sign_nobody_in(
    client: Client, alice: User, alice_secret: str, code: str
) -> None:
    current = totp_code(alice_secret)
    typed = {
        "wrong": f"{(int(current) + 1) % 10**6:06d}",
        "expired": totp_code(alice_secret, steps_from_now=-2),
        "future": totp_code(alice_secret, steps_from_now=2),
    }.get(code, code)
    if typed in {totp_code(alice_secret, steps_from_now=step) for step in (-1, 0, 1)}:
        pytest.skip("the derived code happens to be valid in this time step")  # one in ~300 000
    password_step(client, alice)

    response = second_factor(client, typed)

    assert code_errors(response) == ["incorrect_code"]
    assert "Incorrect code." in response.content.decode()
    assert signed_in_user_id(client) is None
    assert events("accounts.user.signed_in") == []
    assert events("accounts.mfa.authenticated") == []
    [failed] = events("accounts.mfa.authentication_failed")
    assert (failed.actor_id, failed.outcome) == (str(alice.pk), "failure")
    assert failed.metadata["reauthentication"] is False
    assert AccountLockout.objects.get(user=alice).failed_attempts == 1
    totp = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)
    assert "last_accepted_counter" not in totp.data


def test_a_code_works_once_even_in_another_session(client: Client, alice: User, alice_secret: str) -> None:
    code = totp_code(alice_secret)
    password_step(client, alice)
    assert second_factor(client, code).status_code == 302

    thief = Client()
    password_step(thief, alice)
    response = second_factor(thief, code)

    assert code_errors(response) == ["incorrect_code"]
    assert signed_in_user_id(thief) is None
    assert len(events("accounts.user.signed_in")) == 1


def test_an_older_code_is_refused_once_a_newer_one_was_used(
    client: Client, alice: User, alice_secret: str
) -> None:
    password_step(client, alice)
    assert second_factor(client, totp_code(alice_secret, steps_from_now=1)).status_code == 302
    client.post("/accounts/logout/")

    password_step(client, alice)
    response = second_factor(client, totp_code(alice_secret))

    assert code_errors(response) == ["incorrect_code"]
    assert signed_in_user_id(client) is None


def test_a_recovery_code_signs_in_once(
    client: Client, alice: User, alice_secret: str, django_capture_on_commit_callbacks: Any
) -> None:
    codes = recovery_codes_enrol(alice)
    password_step(client, alice)

    with committed(django_capture_on_commit_callbacks):
        response = second_factor(client, codes[3])

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)
    recovery = Authenticator.objects.get(user=alice, type=Authenticator.Type.RECOVERY_CODES)
    assert len(recovery.wrap().get_unused_codes()) == 9
    [used] = events("accounts.mfa.recovery_code_used")
    assert (used.actor_id, used.metadata) == (str(alice.pk), {"codes_left": 9})
    [authenticated] = events("accounts.mfa.authenticated")
    assert (authenticated.metadata["type"], authenticated.metadata["authenticator_id"]) == (
        "recovery_codes",
        recovery.pk,
    )
    assert authenticated.metadata["reauthentication"] is False

    client.post("/accounts/logout/")
    password_step(client, alice)
    again = second_factor(client, codes[3])

    assert code_errors(again) == ["incorrect_code"]
    assert signed_in_user_id(client) is None
    assert len(events("accounts.mfa.recovery_code_used")) == 1
    assert second_factor(client, codes[4]).status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)


# --- a code by e-mail --------------------------------------------------------------------------


def test_a_code_by_email_signs_in_a_user_who_may_use_one(
    client: Client, alice: User, alice_secret: str, django_capture_on_commit_callbacks: Any
) -> None:
    password_step(client, alice)
    page = client.get(SECOND_FACTOR_URL)
    assert EMAIL_BUTTON in page.content.decode()
    assert f'action="{EMAIL_CODE_URL}"' in page.content.decode()

    with committed(django_capture_on_commit_callbacks):
        sent = client.post(EMAIL_CODE_URL, follow=True)

    assert sent.redirect_chain == [(SECOND_FACTOR_URL, 302)]
    assert messages_of(sent) == ["We e-mailed you a 6-digit code. Enter it below; it works for 10 minutes."]
    [message] = [message for message in mail.outbox if message.subject.endswith(EMAIL_CODE_SUBJECT)]
    assert message.to == [alice.email]
    [sent_event] = events("accounts.mfa.email_code_sent")
    assert (sent_event.actor_id, sent_event.metadata) == (str(alice.pk), {"email": alice.email})
    assert signed_in_user_id(client) is None

    with committed(django_capture_on_commit_callbacks):
        response = second_factor(client, emailed_code())

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)
    [authenticated] = events("accounts.mfa.authenticated")
    assert authenticated.metadata == {"type": "email_code", "reauthentication": False}
    email_code = EmailCode.objects.get(user=alice)
    assert email_code.used_at is not None
    assert email_code.code_hash != emailed_code()  # only a keyed hash is kept

    client.post("/accounts/logout/")
    password_step(client, alice)
    assert code_errors(second_factor(client, emailed_code())) == ["incorrect_code"]
    assert signed_in_user_id(client) is None


def test_a_wrong_emailed_code_is_refused(
    client: Client, alice: User, alice_secret: str, django_capture_on_commit_callbacks: Any
) -> None:
    password_step(client, alice)
    with committed(django_capture_on_commit_callbacks):
        client.post(EMAIL_CODE_URL)
    code = emailed_code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    response = second_factor(client, wrong)

    assert code_errors(response) == ["incorrect_code"]
    assert signed_in_user_id(client) is None
    assert EmailCode.objects.get(user=alice).failed_attempts == 1
    assert second_factor(client, code).status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)


@pytest.mark.parametrize("role", [Role.MODERATOR, Role.ADMIN])
def test_users_whose_role_requires_mfa_get_no_code_by_email(
    client: Client, role: str, django_capture_on_commit_callbacks: Any
) -> None:
    staff = user_set_roles(user=member(username="staffer"), roles=[role])
    totp_enrol(staff)
    password_step(client, staff)

    page = client.get(SECOND_FACTOR_URL)
    with committed(django_capture_on_commit_callbacks):
        response = client.post(EMAIL_CODE_URL, follow=True)

    assert EMAIL_BUTTON not in page.content.decode()
    assert EMAIL_CODE_URL not in page.content.decode()
    assert response.redirect_chain == [(SECOND_FACTOR_URL, 302)]
    assert messages_of(response) == ["A code by e-mail is not available for this account."]
    assert [message.subject for message in mail.outbox if message.subject.endswith(EMAIL_CODE_SUBJECT)] == []
    assert EmailCode.objects.filter(user=staff).count() == 0
    assert events("accounts.mfa.email_code_sent") == []
    assert signed_in_user_id(client) is None


def test_asking_for_a_code_without_a_pending_sign_in_goes_back_to_the_sign_in(client: Client) -> None:
    response = client.post(EMAIL_CODE_URL)

    assert response.status_code == 302
    assert response["Location"] == LOGIN_URL
    assert mail.outbox == []
    assert EmailCode.objects.count() == 0


# --- the lockout -------------------------------------------------------------------------------


def test_five_wrong_codes_lock_the_account_and_the_sixth_even_right_gets_429(
    client: Client, alice: User, alice_secret: str, clock: Callable[[timedelta], None]
) -> None:
    password_step(client, alice)
    wrong = f"{(int(totp_code(alice_secret)) + 5) % 10**6:06d}"

    for attempt in range(1, 6):
        response = second_factor(client, wrong)
        assert code_errors(response) == ["incorrect_code"], attempt

    lockout = AccountLockout.objects.get(user=alice)
    assert (lockout.failed_attempts, lockout.lockout_count) == (0, 1)
    assert lockout.locked_until == timezone.now() + timedelta(minutes=1)
    response = second_factor(client, totp_code(alice_secret))

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert "Too many failed sign-in attempts. Retry later." in response.content.decode()
    assert signed_in_user_id(client) is None
    assert events("accounts.user.signed_in") == []
    assert len(events("accounts.mfa.authentication_failed")) == 5
    assert "last_accepted_counter" not in Authenticator.objects.get(user=alice, type="totp").data
    # The password page refuses the account too, until the lockout ends.
    assert Client().post(LOGIN_URL, {"login": alice.email, "password": DEFAULT_PASSWORD}).status_code == 429


# --- enrolment through allauth's pages ---------------------------------------------------------


def test_totp_enrolment_asks_for_the_password_again_then_shows_the_secret_once(
    client: Client, alice: User, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    assert password_step(client, alice).status_code == 302  # no second factor yet: signed in
    assert signed_in_user_id(client) == str(alice.pk)

    step_up = client.get(ACTIVATE_TOTP_URL)
    assert step_up.status_code == 302
    assert step_up["Location"] == f"{REAUTHENTICATE_URL}?next={ACTIVATE_TOTP_URL.replace('/', '%2F')}"
    back = client.post(step_up["Location"], {"password": DEFAULT_PASSWORD})
    assert back.status_code == 302
    assert back["Location"] == ACTIVATE_TOTP_URL

    page = client.get(ACTIVATE_TOTP_URL)
    assert page.status_code == 200
    secret = page.context["form"].secret
    html = page.content.decode()
    assert secret in html
    assert page.context["totp_url"] == (
        f"otpauth://totp/alice%40example.com?secret={secret}&issuer={settings.MFA_TOTP_ISSUER}"
    )
    assert "data:image/svg+xml;base64," in html  # the QR code
    assert client.get(ACTIVATE_TOTP_URL).context["form"].secret != secret  # a new one each time
    # The page shown last holds the secret the form checks against.
    secret = client.get(ACTIVATE_TOTP_URL).context["form"].secret

    wrong = client.post(ACTIVATE_TOTP_URL, {"code": f"{(int(totp_code(secret)) + 1) % 10**6:06d}"})
    assert wrong.status_code == 200
    assert [error.code for error in wrong.context["form"].errors.as_data()["code"]] == ["incorrect_code"]
    assert Authenticator.objects.filter(user=alice).count() == 0

    with committed(django_capture_on_commit_callbacks):
        activated = client.post(ACTIVATE_TOTP_URL, {"code": totp_code(secret)})

    assert activated.status_code == 302
    assert activated["Location"] == RECOVERY_CODES_URL
    totp = Authenticator.objects.get(user=alice, type=Authenticator.Type.TOTP)
    recovery = Authenticator.objects.get(user=alice, type=Authenticator.Type.RECOVERY_CODES)
    enrolled = events("accounts.mfa.enrolled")
    assert [(event.actor_id, event.metadata) for event in enrolled] == [
        (str(alice.pk), {"type": "totp", "authenticator_id": totp.pk}),
        (str(alice.pk), {"type": "recovery_codes", "authenticator_id": recovery.pk}),
    ]
    alice.refresh_from_db()
    assert alice.has_mfa is True
    # From now on the password alone is not enough.
    client.post("/accounts/logout/")
    assert password_step(client, alice)["Location"] == SECOND_FACTOR_URL
    assert second_factor(client, totp_code(secret, steps_from_now=1)).status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)


def test_recovery_codes_are_shown_once_and_regenerated_on_demand(
    client: Client, alice: User, alice_secret: str, django_capture_on_commit_callbacks: Any
) -> None:
    old_codes = recovery_codes_enrol(alice)
    sign_in_with_totp(client, alice, alice_secret)
    mark_reauthenticated(client)

    first = client.get(RECOVERY_CODES_URL)
    second = client.get(RECOVERY_CODES_URL)

    assert first.status_code == second.status_code == 200
    assert sorted(first.context["unused_codes"]) == sorted(old_codes)
    assert second.context["unused_codes"] == ["****"] * 10
    assert not any(code in second.content.decode() for code in old_codes)

    with committed(django_capture_on_commit_callbacks):
        regenerated = client.post(GENERATE_RECOVERY_CODES_URL)

    assert regenerated.status_code == 302
    assert regenerated["Location"] == RECOVERY_CODES_URL
    recovery = Authenticator.objects.get(user=alice, type=Authenticator.Type.RECOVERY_CODES)
    new_codes = recovery.wrap().get_unused_codes()
    assert set(new_codes).isdisjoint(old_codes)
    assert sorted(client.get(RECOVERY_CODES_URL).context["unused_codes"]) == sorted(new_codes)
    [event] = events("accounts.mfa.recovery_codes_regenerated")
    assert (event.actor_id, event.metadata) == (
        str(alice.pk),
        {"type": "recovery_codes", "authenticator_id": recovery.pk},
    )
    # The old set is dead, the new one works.
    client.post("/accounts/logout/")
    password_step(client, alice)
    assert code_errors(second_factor(client, old_codes[0])) == ["incorrect_code"]
    assert second_factor(client, new_codes[0]).status_code == 302
    assert signed_in_user_id(client) == str(alice.pk)


def test_regenerating_recovery_codes_needs_a_recent_re_authentication(
    client: Client, alice: User, alice_secret: str
) -> None:
    codes = recovery_codes_enrol(alice)
    sign_in_with_totp(client, alice, alice_secret)
    mark_reauthenticated(client, seconds_ago=601)

    response = client.post(GENERATE_RECOVERY_CODES_URL)

    assert response.status_code == 302
    assert response["Location"].startswith(REAUTHENTICATE_URL)
    assert sorted(Authenticator.objects.get(user=alice, type="recovery_codes").wrap().get_unused_codes()) == (
        sorted(codes)
    )
    assert events("accounts.mfa.recovery_codes_regenerated") == []


def test_re_authenticating_with_a_totp_code_is_a_step_up(
    client: Client, alice: User, alice_secret: str, django_capture_on_commit_callbacks: Any
) -> None:
    alice.set_unusable_password()  # signs in through a provider: re-authenticates with the factor
    alice.save()
    client.force_login(alice)
    assert client.get(DEACTIVATE_TOTP_URL)["Location"] == (
        f"{MFA_REAUTHENTICATE_URL}?next={DEACTIVATE_TOTP_URL.replace('/', '%2F')}"
    )

    with committed(django_capture_on_commit_callbacks):
        response = client.post(
            f"{MFA_REAUTHENTICATE_URL}?next={DEACTIVATE_TOTP_URL}", {"code": totp_code(alice_secret)}
        )

    assert response.status_code == 302
    assert response["Location"] == DEACTIVATE_TOTP_URL
    [authenticated] = events("accounts.mfa.authenticated")
    assert authenticated.metadata["reauthentication"] is True
    assert authenticated.metadata["type"] == "totp"

    with committed(django_capture_on_commit_callbacks):
        removed = client.post(DEACTIVATE_TOTP_URL)

    assert removed.status_code == 302
    assert Authenticator.objects.filter(user=alice, type="totp").count() == 0
    [event] = events("accounts.mfa.removed")
    assert (event.actor_id, event.metadata["type"]) == (str(alice.pk), "totp")


def test_a_wrong_code_on_re_authentication_is_recorded_and_counted(
    client: Client, alice: User, alice_secret: str
) -> None:
    sign_in_with_totp(client, alice, alice_secret)
    wrong = f"{(int(totp_code(alice_secret)) + 3) % 10**6:06d}"

    response = client.post(MFA_REAUTHENTICATE_URL, {"code": wrong})

    assert response.status_code == 200
    assert [error.code for error in response.context["form"].errors.as_data()["code"]] == ["incorrect_code"]
    [failed] = events("accounts.mfa.authentication_failed")
    assert failed.metadata["reauthentication"] is True
    assert AccountLockout.objects.get(user=alice).failed_attempts == 1
    assert not any(
        record.get("reauthenticated") for record in client.session["account_authentication_methods"]
    )
