"""Per-account lockout with escalating back-off, over every kind of sign-in."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.utils import timezone

from accounts.lockout import unknown_identifier_record_failure, unknown_identifier_state
from accounts.models import AccountLockout, User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.headless import APP, USER_AGENT, signed_in_meta, verified_user
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

WRONG_PASSWORD = "not-the-password-at-all"
KINDS = ("page", "app", "browser", "admin")
LOCKED_BODY = {
    "type": "client_error",
    "errors": [
        {"code": "throttled", "detail": "Too many failed sign-in attempts. Retry later.", "attr": None}
    ],
}
FAILURE_STATUS = {"page": 200, "app": 400, "browser": 400, "admin": 200}
SUCCESS_STATUS = {"page": 302, "app": 200, "browser": 200, "admin": 302}
ADMIN_SIGN_IN_URL = "/accounts/login/?next=%2Fadmin%2F"


@pytest.fixture(autouse=True)
def _generous_ip_limits(settings: Any) -> None:
    """These tests are about the account lockout, not the per-IP limits."""
    settings.RATELIMIT_SIGNIN = "1000/m"


@pytest.fixture
def member() -> User:
    """A staff member with a verified address: may sign in on every path, the admin included."""
    user = UserFactory.create(is_staff=True)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Stop the time the service reads (timezone.now); tests move it forward themselves.

    Retry-After is then exact however slow a run is.
    """
    frozen = timezone.now()

    def advance(by: timedelta) -> None:
        nonlocal frozen
        frozen += by

    monkeypatch.setattr(timezone, "now", lambda: frozen)
    return advance


def sign_in(client: Client, kind: str, identifier: str, password: str) -> Any:
    if kind == "page":
        return client.post("/accounts/login/", {"login": identifier, "password": password})
    if kind == "admin":
        # The admin's sign-in is allauth's page (secure_admin_login); /admin/login/ only redirects to it.
        return client.post(f"{ADMIN_SIGN_IN_URL}", {"login": identifier, "password": password})
    field = "email" if "@" in identifier else "username"
    return client.post(
        f"/_allauth/{kind}/v1/auth/login",
        {field: identifier, "password": password},
        content_type="application/json",
    )


def lockout_of(user: User) -> tuple[int, int, datetime | None]:
    lockout = AccountLockout.objects.get(user=user)
    return lockout.failed_attempts, lockout.lockout_count, lockout.locked_until


def fail_until_locked(client: Client, kind: str, identifier: str) -> None:
    for _ in range(5):
        response = sign_in(client, kind, identifier, WRONG_PASSWORD)
        assert response.status_code == FAILURE_STATUS[kind]


def end_the_lockout(user: User) -> None:
    AccountLockout.objects.filter(user=user).update(locked_until=timezone.now() - timedelta(seconds=1))


def assert_locked_answer(response: Any, kind: str, retry_after: int) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == str(retry_after)
    if kind in ("app", "browser"):
        assert response["Content-Type"] == "application/json"
        assert response.json() == LOCKED_BODY
    else:
        assert response["Content-Type"] == "text/html; charset=utf-8"
        assert "Too many failed sign-in attempts. Retry later." in response.content.decode()


def has_signed_in(user: User) -> bool:
    user.refresh_from_db()
    return user.last_login is not None


@pytest.mark.parametrize("kind", KINDS)
def test_five_failed_sign_ins_lock_the_account_for_a_minute(kind: str, member: User) -> None:
    client = Client()
    identifier = member.username if kind == "admin" else member.email

    for attempt in range(1, 5):
        response = sign_in(client, kind, identifier, WRONG_PASSWORD)
        assert response.status_code == FAILURE_STATUS[kind]
        assert lockout_of(member) == (attempt, 0, None)
    response = sign_in(client, kind, identifier, WRONG_PASSWORD)

    assert response.status_code == FAILURE_STATUS[kind]
    assert lockout_of(member) == (0, 1, timezone.now() + timedelta(minutes=1))
    assert_locked_answer(sign_in(client, kind, identifier, WRONG_PASSWORD), kind, retry_after=60)


@pytest.mark.parametrize("kind", KINDS)
def test_correct_password_is_refused_while_locked(kind: str, member: User) -> None:
    client = Client()
    identifier = member.username if kind == "admin" else member.email
    fail_until_locked(client, kind, identifier)
    locked = lockout_of(member)

    response = sign_in(client, kind, identifier, DEFAULT_PASSWORD)

    assert_locked_answer(response, kind, retry_after=60)
    assert "_auth_user_id" not in client.session
    assert not has_signed_in(member)
    assert lockout_of(member) == locked


@pytest.mark.parametrize("kind", KINDS)
def test_sign_in_after_the_lockout_succeeds_and_clears_the_counters(kind: str, member: User) -> None:
    client = Client()
    identifier = member.username if kind == "admin" else member.email
    fail_until_locked(client, kind, identifier)
    end_the_lockout(member)

    response = sign_in(client, kind, identifier, DEFAULT_PASSWORD)

    assert response.status_code == SUCCESS_STATUS[kind]
    assert has_signed_in(member)
    assert lockout_of(member) == (0, 0, None)


def test_lockout_escalates_through_1_5_15_30_60_then_stays_at_60_minutes(member: User) -> None:
    client = Client()

    for round_number, minutes in enumerate((1, 5, 15, 30, 60, 60), start=1):
        fail_until_locked(client, "app", member.email)
        lockout = AccountLockout.objects.get(user=member)
        assert (lockout.failed_attempts, lockout.lockout_count) == (0, round_number)
        assert lockout.last_failure_at is not None
        assert lockout.locked_until == lockout.last_failure_at + timedelta(minutes=minutes)
        assert_locked_answer(
            sign_in(client, "app", member.email, DEFAULT_PASSWORD), "app", retry_after=minutes * 60
        )
        end_the_lockout(member)


def test_username_and_email_share_the_account_counter(member: User) -> None:
    client = Client()
    for identifier in (member.username, member.email, member.email.upper(), member.username, member.email):
        assert sign_in(client, "page", identifier, WRONG_PASSWORD).status_code == 200

    assert_locked_answer(sign_in(client, "app", member.username, DEFAULT_PASSWORD), "app", retry_after=60)
    assert lockout_of(member)[1] == 1


def test_each_attempt_counts_once(member: User) -> None:
    """The sign-in page passes the identifier as both e-mail and username to one authenticate()."""
    client = Client()

    sign_in(client, "page", member.email, WRONG_PASSWORD)
    sign_in(client, "admin", member.email, WRONG_PASSWORD)
    sign_in(client, "browser", member.email, WRONG_PASSWORD)

    assert lockout_of(member) == (3, 0, None)


def test_successful_sign_in_clears_failed_attempts(member: User) -> None:
    client = Client()
    for _ in range(4):
        sign_in(client, "app", member.email, WRONG_PASSWORD)

    assert sign_in(client, "app", member.email, DEFAULT_PASSWORD).status_code == 200
    assert lockout_of(member) == (0, 0, None)

    other_client = Client()
    for _ in range(4):
        assert sign_in(other_client, "app", member.email, WRONG_PASSWORD).status_code == 400
    assert lockout_of(member)[:2] == (4, 0)
    assert sign_in(other_client, "app", member.email, DEFAULT_PASSWORD).status_code == 200


def test_success_forgets_earlier_lockouts(member: User) -> None:
    client = Client()
    fail_until_locked(client, "app", member.email)
    end_the_lockout(member)
    assert sign_in(client, "app", member.email, DEFAULT_PASSWORD).status_code == 200

    fail_until_locked(Client(), "app", member.email)

    assert lockout_of(member) == (0, 1, timezone.now() + timedelta(minutes=1))
    assert_locked_answer(sign_in(Client(), "app", member.email, DEFAULT_PASSWORD), "app", retry_after=60)


def test_failures_older_than_a_day_are_forgotten(member: User, clock: Callable[[timedelta], None]) -> None:
    client = Client()
    for _ in range(4):
        sign_in(client, "app", member.email, WRONG_PASSWORD)

    clock(timedelta(hours=24))
    response = sign_in(client, "app", member.email, WRONG_PASSWORD)

    assert response.status_code == 400
    assert lockout_of(member)[:2] == (1, 0)


@pytest.mark.parametrize("kind", ["page", "app", "browser", "admin"])
def test_unknown_identifier_and_locked_account_answer_identically(
    kind: str, member: User, clock: Callable[[timedelta], None]
) -> None:
    known_client, unknown_client = Client(), Client()
    known, unknown = member.email, "nobody@example.com"
    users_before = User.objects.count()

    for minutes in (1, 5):
        for _ in range(5):
            known_answer = sign_in(known_client, kind, known, WRONG_PASSWORD)
            unknown_answer = sign_in(unknown_client, kind, unknown, WRONG_PASSWORD)
            assert known_answer.status_code == unknown_answer.status_code == FAILURE_STATUS[kind]
            if kind in ("app", "browser"):
                assert known_answer.json() == unknown_answer.json()
        known_locked = sign_in(known_client, kind, known, DEFAULT_PASSWORD)
        unknown_locked = sign_in(unknown_client, kind, unknown, DEFAULT_PASSWORD)
        assert_locked_answer(known_locked, kind, retry_after=minutes * 60)
        assert_locked_answer(unknown_locked, kind, retry_after=minutes * 60)
        assert known_locked.content == unknown_locked.content
        clock(timedelta(minutes=minutes, seconds=1))

    assert User.objects.count() == users_before
    assert AccountLockout.objects.count() == 1


def test_a_burst_of_parallel_failures_locks_an_unknown_identifier_once() -> None:
    """Counted under a mutex, as an account's row is locked: a burst cannot tell the two apart."""
    identifier = "nobody@example.com"

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda _: unknown_identifier_record_failure(identifier=identifier), range(10)))

    state = unknown_identifier_state(identifier)
    assert (state.failed_attempts, state.lockout_count) == (0, 1)
    assert state.locked_until == timezone.now() + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        # allauth's headless views read a JSON body whatever the Content-Type says.
        ("/_allauth/app/v1/auth/login", '{"email": "%s", "password": "%s"}', "text/plain"),
        # A field the view ignores cannot name another account to the gate.
        (
            "/_allauth/app/v1/auth/login",
            '{"login": "x", "email": "%s", "password": "%s"}',
            "application/json",
        ),
        ("/accounts/login/", "username=x&login=%s&password=%s", "application/x-www-form-urlencoded"),
        # The admin's sign-in.
        (ADMIN_SIGN_IN_URL, "username=x&login=%s&password=%s", "application/x-www-form-urlencoded"),
    ],
)
def test_the_gate_reads_the_account_the_view_signs_in(
    path: str, body: str, content_type: str, member: User
) -> None:
    fail_until_locked(Client(), "app", member.email)
    identifier = member.username if path == ADMIN_SIGN_IN_URL else member.email

    response = Client().post(path, body % (identifier, DEFAULT_PASSWORD), content_type=content_type)

    assert response.status_code == 429
    assert not has_signed_in(member)


def test_the_admins_own_login_form_checks_no_password(member: User) -> None:
    """No second way in past the lockout: /admin/login/ only sends browsers to allauth's sign-in."""
    client = Client()
    answers = [
        client.post(
            "/admin/login/?next=/admin/",
            {"username": member.username, "password": password, "next": "/admin/"},
        )
        for password in [WRONG_PASSWORD] * 6 + [DEFAULT_PASSWORD]
    ]

    assert {(answer.status_code, answer["Location"]) for answer in answers} == {(302, ADMIN_SIGN_IN_URL)}
    assert "_auth_user_id" not in client.session
    assert not has_signed_in(member)
    assert not AccountLockout.objects.filter(user=member).exists()


def test_wrong_codes_and_wrong_passwords_count_toward_one_lockout(member: User) -> None:
    """The right password alone does not clear the count (the sign-in is not done): else whoever
    knows the password could guess codes forever, signing in again every four guesses."""
    from accounts.tests.factories import totp_code, totp_enrol

    secret = totp_enrol(member)
    client = Client()
    for _ in range(3):
        assert sign_in(client, "admin", member.username, WRONG_PASSWORD).status_code == 200
    assert (
        sign_in(client, "admin", member.username, DEFAULT_PASSWORD)["Location"]
        == "/accounts/2fa/authenticate/"
    )
    assert lockout_of(member) == (3, 0, None)

    wrong = f"{(int(totp_code(secret)) + 1) % 10**6:06d}"
    for _ in range(2):
        assert client.post("/accounts/2fa/authenticate/", {"code": wrong}).status_code == 200
    locked = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})

    assert_locked_answer(locked, "page", retry_after=60)
    assert lockout_of(member) == (0, 1, timezone.now() + timedelta(minutes=1))
    assert_locked_answer(
        sign_in(Client(), "admin", member.username, DEFAULT_PASSWORD), "admin", retry_after=60
    )
    assert not has_signed_in(member)


# --- an identifier names only the account that owns it (issue 12, finding 1) --------------------


def test_another_accounts_unverified_copy_of_an_address_does_not_divert_its_failures() -> None:
    """The review's attack: the attacker adds the victim's address, unverified, to their own
    account, then guesses the victim's password four times, signs in to their own account (which
    used to clear the count the guesses landed on), and repeats. Every guess is the victim's: the
    victim is locked at the fifth, and the attacker reads none of it in their own security log."""
    victim = UserFactory.create(id=uuid.UUID(int=2**127), email="victim@example.com")
    EmailAddress.objects.create(user=victim, email="victim@example.com", primary=True, verified=True)
    # The attacker's ID sorts first, as in the review (the old lookup took the lowest ID).
    attacker = UserFactory.create(id=uuid.UUID(int=1), email="attacker@example.com")
    EmailAddress.objects.create(user=attacker, email="attacker@example.com", primary=True, verified=True)
    meta = signed_in_meta(attacker)
    reauthenticated = app_post_authenticated(meta, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD})
    assert reauthenticated.status_code == 200, reauthenticated.content
    added = app_post_authenticated(meta, "/account/email", {"email": "victim@example.com"})
    assert added.status_code == 200, added.content
    assert EmailAddress.objects.filter(user=attacker, email="victim@example.com", verified=False).exists()

    guesses = 0
    refused = 0
    for _ in range(3):
        for _ in range(4):
            answer = sign_in(Client(), "app", "victim@example.com", WRONG_PASSWORD)
            guesses += 1
            refused += answer.status_code == 429
        assert sign_in(Client(), "app", "attacker@example.com", DEFAULT_PASSWORD).status_code == 200

    assert guesses == 12
    # The fifth guess locked the victim; every later one was refused at the gate.
    assert refused == 7
    assert lockout_of(victim)[1:] == (1, timezone.now() + timedelta(minutes=1))
    assert not AccountLockout.objects.filter(user=attacker, lockout_count__gt=0).exists()
    own_log = api_get(meta, "/api/v1/users/me/audit-events/?page_size=100").json()["results"]
    assert [event["action"] for event in own_log if event["outcome"] == "failure"] == []
    assert (
        AuditEvent.objects.filter(action="accounts.user.sign_in_failed", target_id=str(victim.pk)).count()
        == 5
    )


def test_an_address_nobody_verified_is_counted_against_the_address_itself() -> None:
    """Two accounts with the same unverified address: failures name neither of them."""
    first = UserFactory.create(email="shared@example.com")
    second = UserFactory.create(email="second@example.com")
    EmailAddress.objects.create(user=first, email="shared@example.com", primary=True, verified=False)
    EmailAddress.objects.create(user=second, email="shared@example.com", primary=False, verified=False)

    for _ in range(5):
        assert sign_in(Client(), "app", "shared@example.com", WRONG_PASSWORD).status_code == 400

    assert_locked_answer(
        sign_in(Client(), "app", "shared@example.com", DEFAULT_PASSWORD), "app", retry_after=60
    )
    assert not AccountLockout.objects.filter(user__in=[first, second]).exists()
    failures = AuditEvent.objects.filter(action="accounts.user.sign_in_failed")
    assert {(event.target_id, event.metadata["reason"]) for event in failures} == {("", "unknown_account")}
    # The owner of a username is still its account, verified address or not.
    assert sign_in(Client(), "app", first.username, WRONG_PASSWORD).status_code == 400
    assert lockout_of(first) == (1, 0, None)


def app_post_authenticated(meta: dict[str, Any], path: str, body: dict[str, Any]) -> Any:
    return Client().post(
        f"{APP}{path}",
        body,
        content_type="application/json",
        headers={"User-Agent": USER_AGENT, "X-Session-Token": meta["session_token"]},
    )


def api_get(meta: dict[str, Any], path: str) -> Any:
    return Client().get(path, headers={"Authorization": f"Bearer {meta['access_token']}"})


# --- a wrong current password on a password change counts like a failed sign-in (finding 9) ---

NEW_PASSWORD = "an-entirely-new-passphrase-42"


def change_password(kind: str, signed_in: Any, current: str) -> Any:
    if kind == "page":
        return signed_in.post(
            "/accounts/password/change/",
            {"oldpassword": current, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
    return app_post_authenticated(
        signed_in, "/account/password/change", {"current_password": current, "new_password": NEW_PASSWORD}
    )


def signed_in_for_password_change(kind: str, member: User) -> Any:
    """A browser session (the page) or the app's session token and JWTs (the headless API)."""
    if kind == "page":
        browser = Client()
        browser.force_login(member)
        return browser
    return signed_in_meta(member)


@pytest.mark.parametrize("kind", ["page", "app"])
def test_wrong_current_passwords_on_a_password_change_are_audited_and_lock_the_account(kind: str) -> None:
    """Whoever holds a signed-in session must not guess its password through the change form."""
    member = verified_user()
    signed_in = signed_in_for_password_change(kind, member)

    for attempt in range(1, 5):
        response = change_password(kind, signed_in, WRONG_PASSWORD)
        assert response.status_code in (200, 400)
        assert lockout_of(member) == (attempt, 0, None)
    change_password(kind, signed_in, WRONG_PASSWORD)
    refused = change_password(kind, signed_in, DEFAULT_PASSWORD)

    assert lockout_of(member) == (0, 1, timezone.now() + timedelta(minutes=1))
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    member.refresh_from_db()
    assert member.check_password(DEFAULT_PASSWORD)
    failures = AuditEvent.objects.filter(action="accounts.user.sign_in_failed", target_id=str(member.pk))
    assert [(event.actor_id, event.metadata["reason"]) for event in failures] == [
        (str(member.pk), "invalid_current_password")
    ] * 5
    assert AuditEvent.objects.filter(action="accounts.user.locked_out", target_id=str(member.pk)).count() == 1
    # Signing in is refused too: one lockout for the account.
    assert_locked_answer(sign_in(Client(), "app", member.email, DEFAULT_PASSWORD), "app", retry_after=60)


@pytest.mark.parametrize("kind", ["page", "app"])
def test_the_right_current_password_changes_it_and_counts_no_failure(kind: str) -> None:
    member = verified_user()
    signed_in = signed_in_for_password_change(kind, member)
    change_password(kind, signed_in, WRONG_PASSWORD)

    response = change_password(kind, signed_in, DEFAULT_PASSWORD)

    assert response.status_code in (200, 302)
    member.refresh_from_db()
    assert member.check_password(NEW_PASSWORD)
    assert lockout_of(member) == (1, 0, None)
