"""Second factors over allauth's headless JSON API, as an app client goes through them: TOTP,
recovery codes, codes by e-mail, replay, malformed codes, the lockout and the audit trail
(docs/decisions/0012-mfa-and-step-up.md)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core import mail
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import AccountLockout, DeviceSession, EmailCode, User
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import (
    DEFAULT_PASSWORD,
    UserFactory,
    recovery_codes_enrol,
    totp_code,
    totp_enrol,
)
from accounts.tests.headless import APP, USER_AGENT, app_post, verified_user, with_step_headroom
from audit.models import AuditEvent

# E-mails, cache marks and audit rows follow commits: these tests really commit.
pytestmark = pytest.mark.django_db(transaction=True)

EMAIL_CODE_IN_BODY = re.compile(r"^\s*(\d{6})\s*$", re.MULTILINE)
INCORRECT_CODE = {
    "code": "incorrect_code",
    "message": "Incorrect code.",
    "param": "code",
    "detail": "Incorrect code.",
    "attr": "code",
}


# --- helpers ----------------------------------------------------------------------------------


def totp_user(**fields: Any) -> tuple[User, str]:
    user = verified_user(**fields)
    return user, totp_enrol(user)


def app_request(client: Client, method: str, path: str, session_token: str) -> Any:
    headers = {"User-Agent": USER_AGENT, "X-Session-Token": session_token}
    return getattr(client, method)(f"{APP}{path}", headers=headers)


@dataclass
class PendingSignIn:
    """A sign-in whose password was right and which waits for its second factor."""

    client: Client
    session_token: str
    body: dict[str, Any]


def start_sign_in(user: User) -> PendingSignIn:
    client = Client()
    response = app_post(client, "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})
    assert response.status_code == 401, response.content
    body = response.json()
    return PendingSignIn(client=client, session_token=body["meta"]["session_token"], body=body)


def second_factor(pending: PendingSignIn, code: Any) -> Any:
    return app_post(pending.client, "/auth/2fa/authenticate", {"code": code}, pending.session_token)


def request_email_code(pending: PendingSignIn) -> Any:
    return app_post(pending.client, "/auth/2fa/email-code", {}, pending.session_token)


def sign_in_with_totp(user: User, secret: str, *, steps_from_now: int = 0) -> dict[str, Any]:
    """A complete sign-in: password, then a TOTP code; the response's `meta` (tokens)."""
    with_step_headroom()
    pending = start_sign_in(user)
    response = second_factor(pending, totp_code(secret, steps_from_now=steps_from_now))
    assert response.status_code == 200, response.content
    meta: dict[str, Any] = response.json()["meta"]
    return meta


def emailed_code() -> str:
    match = EMAIL_CODE_IN_BODY.search(str(mail.outbox[-1].body))
    assert match is not None, mail.outbox[-1].body
    return match.group(1)


def claims(access_token: str) -> AccessToken:
    return AccessToken(access_token)  # type: ignore[arg-type]  # simplejwt accepts the encoded token


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def events(action: str, user: User) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(user.pk)).order_by("id"))


def failed_attempts(user: User) -> int:
    lockout = AccountLockout.objects.filter(user=user).first()
    return lockout.failed_attempts if lockout is not None else 0


def flow(body: dict[str, Any], flow_id: str) -> dict[str, Any] | None:
    return next((item for item in body["data"]["flows"] if item["id"] == flow_id), None)


# --- TOTP at sign-in --------------------------------------------------------------------------


def test_a_totp_sign_in_waits_for_the_code_and_only_then_issues_tokens_with_amr_and_auth_time() -> None:
    user, secret = totp_user()
    totp = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    with_step_headroom()
    before = int(time.time())

    pending = start_sign_in(user)

    assert pending.body["meta"] == {"is_authenticated": False, "session_token": pending.session_token}
    assert flow(pending.body, "mfa_authenticate") == {
        "id": "mfa_authenticate",
        "is_pending": True,
        "types": ["totp"],
    }
    assert not DeviceSession.objects.filter(user=user).exists()

    response = second_factor(pending, totp_code(secret))

    assert response.status_code == 200, response.content
    meta = response.json()["meta"]
    assert set(meta) == {
        "is_authenticated",
        "session_token",
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }
    access = claims(meta["access_token"])
    refresh = RefreshToken(meta["refresh_token"])
    assert access["amr"] == ["mfa", "otp", "pwd"]
    assert refresh["amr"] == ["mfa", "otp", "pwd"]
    assert before <= access["auth_time"] <= int(time.time())
    assert refresh["auth_time"] == access["auth_time"]
    # One sign-in, one device session (allauth builds the response twice when a stage completes).
    device = DeviceSession.objects.get(user=user)
    assert str(device.pk) == access["sid"]
    assert device.auth_time is not None
    assert (device.amr, int(device.auth_time.timestamp())) == (["mfa", "otp", "pwd"], access["auth_time"])
    me = bearer(meta["access_token"]).get("/api/v1/users/me/")
    assert me.status_code == 200
    assert (me.json()["has_mfa"], me.json()["mfa_factors"], me.json()["mfa_required"]) == (
        True,
        ["totp"],
        False,
    )
    rotated = APIClient().post(
        "/api/v1/auth/token/refresh/", {"refresh_token": meta["refresh_token"]}, format="json"
    )
    assert rotated.status_code == 200
    assert claims(rotated.json()["access_token"])["amr"] == ["mfa", "otp", "pwd"]
    [event] = events("accounts.mfa.authenticated", user)
    assert event.actor_id == str(user.pk)
    assert event.metadata == {
        "type": "totp",
        "authenticator_id": totp.pk,
        "reauthentication": False,
        "passwordless": False,
    }
    assert events("accounts.mfa.authentication_failed", user) == []


def test_a_totp_code_is_refused_the_second_time_even_on_another_sign_in() -> None:
    user, secret = totp_user()
    with_step_headroom()
    code = totp_code(secret)
    first = start_sign_in(user)
    assert second_factor(first, code).status_code == 200

    again = start_sign_in(user)
    response = second_factor(again, code)

    assert response.status_code == 400
    assert response.json()["errors"] == [INCORRECT_CODE]
    assert "access_token" not in response.json().get("meta", {})
    assert DeviceSession.objects.filter(user=user).count() == 1
    [failure] = events("accounts.mfa.authentication_failed", user)
    assert failure.outcome == AuditEvent.Outcome.FAILURE
    assert failure.metadata["reauthentication"] is False
    assert failure.metadata["type"] == "totp"


def test_a_code_of_an_older_step_is_refused_once_a_newer_one_was_used() -> None:
    user, secret = totp_user()
    sign_in_with_totp(user, secret, steps_from_now=1)

    with_step_headroom()
    pending = start_sign_in(user)
    response = second_factor(pending, totp_code(secret))

    assert response.status_code == 400
    assert response.json()["errors"] == [INCORRECT_CODE]
    assert DeviceSession.objects.filter(user=user).count() == 1


@pytest.mark.parametrize("steps_from_now", [-1, 1])
def test_the_code_of_the_previous_or_next_step_is_accepted(steps_from_now: int) -> None:
    user, secret = totp_user()

    meta = sign_in_with_totp(user, secret, steps_from_now=steps_from_now)

    assert claims(meta["access_token"])["amr"] == ["mfa", "otp", "pwd"]


@pytest.mark.parametrize("steps_from_now", [-2, 2])
def test_a_code_two_steps_away_is_refused(steps_from_now: int) -> None:
    user, secret = totp_user()
    with_step_headroom()
    pending = start_sign_in(user)

    response = second_factor(pending, totp_code(secret, steps_from_now=steps_from_now))

    assert response.status_code == 400
    assert response.json()["errors"] == [INCORRECT_CODE]
    assert not DeviceSession.objects.filter(user=user).exists()
    assert Authenticator.objects.get(user=user, type="totp").data.get("last_accepted_counter") is None


# --- malformed codes, and the lockout ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [{"code": "abcdef"}, {"code": ""}, {"code": "   "}, {"code": "1" * 50}, {}],
    ids=["letters", "empty", "blank", "fifty-digits", "missing"],
)
def test_a_malformed_code_is_incorrect_code_in_the_error_shape_and_counts_toward_the_lockout(
    body: dict[str, Any],
) -> None:
    user, _ = totp_user()
    pending = start_sign_in(user)

    response = app_post(pending.client, "/auth/2fa/authenticate", body, pending.session_token)

    assert response.status_code == 400
    assert response.json() == {"status": 400, "errors": [INCORRECT_CODE], "type": "validation_error"}
    assert not DeviceSession.objects.filter(user=user).exists()
    assert len(events("accounts.mfa.authentication_failed", user)) == 1
    assert failed_attempts(user) == 1
    # The sign-in still waits for its second factor.
    status = app_request(pending.client, "get", "/auth/session", pending.session_token)
    assert status.status_code == 401
    assert flow(status.json(), "mfa_authenticate") == {
        "id": "mfa_authenticate",
        "is_pending": True,
        "types": ["totp"],
    }


def test_five_wrong_codes_lock_the_account_and_then_even_the_right_code_gets_429() -> None:
    user, secret = totp_user()
    pending = start_sign_in(user)

    for _ in range(5):
        assert (
            second_factor(pending, "000000" if totp_code(secret) != "000000" else "111111").status_code == 400
        )

    [locked] = events("accounts.user.locked_out", user)
    assert locked.metadata == {"seconds": 60, "lockout_count": 1}
    with_step_headroom()
    response = second_factor(pending, totp_code(secret))

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert response.json() == {
        "type": "client_error",
        "errors": [
            {"code": "throttled", "detail": "Too many failed sign-in attempts. Retry later.", "attr": None}
        ],
    }
    assert not DeviceSession.objects.filter(user=user).exists()
    assert Authenticator.objects.get(user=user, type="totp").data.get("last_accepted_counter") is None
    assert len(events("accounts.mfa.authentication_failed", user)) == 5
    # A fresh sign-in with the right password is refused as well while the lock lasts.
    password = app_post(Client(), "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})
    assert password.status_code == 429


def test_a_successful_sign_in_clears_the_failure_counter() -> None:
    user, secret = totp_user()
    pending = start_sign_in(user)
    for wrong in ("12345", "abcdef", "", "99999999"):
        assert second_factor(pending, wrong).status_code == 400
    assert failed_attempts(user) == 4

    with_step_headroom()
    assert second_factor(pending, totp_code(secret)).status_code == 200

    assert failed_attempts(user) == 0
    assert events("accounts.user.locked_out", user) == []


# --- recovery codes ---------------------------------------------------------------------------


def test_each_recovery_code_works_once_and_its_use_is_audited_with_the_codes_left() -> None:
    user, _ = totp_user()
    codes = recovery_codes_enrol(user)
    recovery = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)

    first = second_factor(start_sign_in(user), codes[0])

    assert first.status_code == 200, first.content
    assert claims(first.json()["meta"]["access_token"])["amr"] == ["mfa", "otp", "pwd"]
    [used] = events("accounts.mfa.recovery_code_used", user)
    assert used.metadata == {"codes_left": 9}
    [authenticated] = events("accounts.mfa.authenticated", user)
    assert authenticated.metadata == {
        "type": "recovery_codes",
        "authenticator_id": recovery.pk,
        "reauthentication": False,
        "passwordless": False,
    }

    replayed = second_factor(start_sign_in(user), codes[0])

    assert replayed.status_code == 400
    assert replayed.json()["errors"] == [INCORRECT_CODE]
    assert DeviceSession.objects.filter(user=user).count() == 1

    second = second_factor(start_sign_in(user), codes[1])

    assert second.status_code == 200
    assert [event.metadata for event in events("accounts.mfa.recovery_code_used", user)] == [
        {"codes_left": 9},
        {"codes_left": 8},
    ]
    assert len(Authenticator.objects.get(pk=recovery.pk).wrap().get_unused_codes()) == 8


def test_regenerating_recovery_codes_needs_a_reauthentication_and_kills_the_old_set(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "100/m"
    user, secret = totp_user()
    old_codes = recovery_codes_enrol(user)
    old = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    meta = sign_in_with_totp(user, secret)
    client, session_token = Client(), meta["session_token"]

    refused = app_post(client, "/account/authenticators/recovery-codes", {}, session_token)

    assert refused.status_code == 401
    assert [item["id"] for item in refused.json()["data"]["flows"]] == [
        "reauthenticate",
        "mfa_reauthenticate",
    ]
    assert list(Authenticator.objects.filter(user=user, type="recovery_codes")) == [old]
    assert events("accounts.mfa.recovery_codes_regenerated", user) == []

    reauthenticated = app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, session_token)
    assert reauthenticated.status_code == 200, reauthenticated.content
    response = app_post(client, "/account/authenticators/recovery-codes", {}, session_token)

    assert response.status_code == 200, response.content
    new_codes = response.json()["data"]["unused_codes"]
    assert len(new_codes) == 10
    assert not set(new_codes) & set(old_codes)
    new = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    assert new.pk != old.pk
    [regenerated] = events("accounts.mfa.recovery_codes_regenerated", user)
    assert regenerated.metadata == {"type": "recovery_codes", "authenticator_id": new.pk}
    assert second_factor(start_sign_in(user), old_codes[0]).status_code == 400
    assert second_factor(start_sign_in(user), new_codes[0]).status_code == 200


# --- codes by e-mail --------------------------------------------------------------------------


def test_a_code_by_email_completes_a_pending_sign_in_once() -> None:
    user, _ = totp_user()
    pending = start_sign_in(user)

    sent = request_email_code(pending)

    assert sent.status_code == 200, sent.content
    local, domain = user.email.lower().split("@")
    assert sent.json()["data"] == {"sent_to": f"{local[0]}•••@{domain}"}
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [user.email.lower()]
    assert "Your sign-in code" in mail.outbox[0].subject
    code = emailed_code()
    stored = EmailCode.objects.get(user=user)
    assert code not in stored.code_hash
    [sent_event] = events("accounts.mfa.email_code_sent", user)
    assert sent_event.metadata == {"email": user.email.lower()}

    response = second_factor(pending, code)

    assert response.status_code == 200, response.content
    access = claims(response.json()["meta"]["access_token"])
    assert access["amr"] == ["mfa", "otp", "pwd"]
    stored.refresh_from_db()
    assert stored.used_at is not None
    [authenticated] = events("accounts.mfa.authenticated", user)
    assert authenticated.metadata == {"type": "email_code", "reauthentication": False}

    replayed = second_factor(start_sign_in(user), code)

    assert replayed.status_code == 400
    assert replayed.json()["errors"] == [INCORRECT_CODE]
    assert DeviceSession.objects.filter(user=user).count() == 1


def test_an_expired_email_code_is_refused() -> None:
    user, _ = totp_user()
    pending = start_sign_in(user)
    assert request_email_code(pending).status_code == 200
    EmailCode.objects.filter(user=user).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = second_factor(pending, emailed_code())

    assert response.status_code == 400
    assert response.json()["errors"] == [INCORRECT_CODE]
    assert not DeviceSession.objects.filter(user=user).exists()
    assert EmailCode.objects.get(user=user).used_at is None


def test_an_email_code_dies_after_five_wrong_guesses(settings: Any) -> None:
    settings.ACCOUNTS_LOCKOUT_THRESHOLD = 10  # the code dies before the account locks
    user, _ = totp_user()
    pending = start_sign_in(user)
    assert request_email_code(pending).status_code == 200
    code = emailed_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    for _ in range(5):
        assert second_factor(pending, wrong).status_code == 400
    response = second_factor(pending, code)

    assert response.status_code == 400
    assert response.json()["errors"] == [INCORRECT_CODE]
    assert not DeviceSession.objects.filter(user=user).exists()
    stored = EmailCode.objects.get(user=user)
    assert (stored.failed_attempts, stored.used_at) == (5, None)
    assert stored.expires_at <= timezone.now()


def test_only_the_latest_email_code_works() -> None:
    user, _ = totp_user()
    pending = start_sign_in(user)
    assert request_email_code(pending).status_code == 200
    first = emailed_code()
    assert request_email_code(pending).status_code == 200
    latest = emailed_code()

    if first != latest:
        assert second_factor(pending, first).status_code == 400
    assert second_factor(pending, latest).status_code == 200


def test_a_fourth_email_code_within_fifteen_minutes_is_429_with_retry_after() -> None:
    user, _ = totp_user()
    pending = start_sign_in(user)
    for _ in range(3):
        assert request_email_code(pending).status_code == 200

    response = request_email_code(pending)

    assert response.status_code == 429
    assert 890 <= int(response["Retry-After"]) <= 900
    body = response.json()
    assert body["type"] == "client_error"
    assert [(error["code"], error["attr"]) for error in body["errors"]] == [("throttled", None)]
    assert len(mail.outbox) == 3
    assert EmailCode.objects.filter(user=user).count() == 3
    assert len(events("accounts.mfa.email_code_sent", user)) == 3

    # Once the first of them is out of the window, another may be sent.
    first = EmailCode.objects.filter(user=user).order_by("created_at").first()
    assert first is not None
    EmailCode.objects.filter(pk=first.pk).update(created_at=first.created_at - timedelta(minutes=15))
    assert request_email_code(pending).status_code == 200
    assert len(mail.outbox) == 4


def test_email_codes_are_unavailable_to_a_user_whose_role_requires_mfa() -> None:
    user, _ = totp_user()
    user_set_roles(user=user, roles=["moderator"])
    pending = start_sign_in(user)

    response = request_email_code(pending)

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "code": "email_code_unavailable",
            "message": "A code by e-mail is not available for this account.",
            "detail": "A code by e-mail is not available for this account.",
            "attr": None,
        }
    ]
    assert mail.outbox == []
    assert not EmailCode.objects.filter(user=user).exists()
    assert events("accounts.mfa.email_code_sent", user) == []


def test_an_email_code_sent_before_a_promotion_to_a_role_requiring_mfa_is_refused() -> None:
    user, _ = totp_user()
    pending = start_sign_in(user)
    assert request_email_code(pending).status_code == 200
    user_set_roles(user=user, roles=["moderator"])

    response = second_factor(pending, emailed_code())

    assert response.status_code == 400
    assert response.json()["errors"] == [INCORRECT_CODE]
    assert not DeviceSession.objects.filter(user=user).exists()
    assert EmailCode.objects.get(user=user).used_at is None


def test_email_codes_go_only_to_a_verified_primary_address() -> None:
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=False)
    EmailAddress.objects.create(user=user, email="other@example.com", primary=False, verified=True)
    totp_enrol(user)
    pending = start_sign_in(user)

    response = request_email_code(pending)

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "email_code_unavailable"
    assert mail.outbox == []
    assert not EmailCode.objects.filter(user=user).exists()


def test_email_codes_can_be_turned_off(settings: Any) -> None:
    settings.ACCOUNTS_MFA_EMAIL_CODES = False
    user, _ = totp_user()

    response = request_email_code(start_sign_in(user))

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "email_code_unavailable"
    assert mail.outbox == []


def test_an_email_code_is_only_sent_during_a_pending_sign_in() -> None:
    user, secret = totp_user()

    anonymous = app_post(Client(), "/auth/2fa/email-code", {})
    signed_in = app_post(
        Client(), "/auth/2fa/email-code", {}, sign_in_with_totp(user, secret)["session_token"]
    )

    assert (anonymous.status_code, signed_in.status_code) == (401, 401)
    assert mail.outbox == []
    assert not EmailCode.objects.exists()


# --- enrolment and removal over the headless API ----------------------------------------------


def test_headless_totp_enrolment_and_removal_end_to_end_with_their_audit_events(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "100/m"
    user = verified_user()
    client = Client()
    signed_in = app_post(client, "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})
    assert signed_in.status_code == 200, signed_in.content
    session_token = signed_in.json()["meta"]["session_token"]

    offered = app_request(client, "get", "/account/authenticators/totp", session_token)

    assert offered.status_code == 404  # no authenticator yet: here is a secret to set one up
    secret = offered.json()["meta"]["secret"]
    assert offered.json()["meta"]["totp_url"].startswith("otpauth://totp/")
    with_step_headroom()
    refused = app_post(client, "/account/authenticators/totp", {"code": totp_code(secret)}, session_token)
    assert refused.status_code == 401  # allauth: adding a factor needs a re-authentication
    assert flow(refused.json(), "reauthenticate") == {"id": "reauthenticate"}
    assert not Authenticator.objects.filter(user=user).exists()

    reauthenticated = app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, session_token)
    assert reauthenticated.status_code == 200, reauthenticated.content
    with_step_headroom()
    activated = app_post(client, "/account/authenticators/totp", {"code": totp_code(secret)}, session_token)

    assert activated.status_code == 200, activated.content
    assert activated.json()["data"]["type"] == "totp"
    totp = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    recovery = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    assert [event.metadata for event in events("accounts.mfa.enrolled", user)] == [
        {"type": "totp", "authenticator_id": totp.pk},
        {"type": "recovery_codes", "authenticator_id": recovery.pk},
    ]
    assert bearer(signed_in.json()["meta"]["access_token"]).get("/api/v1/users/me/").json()[
        "mfa_factors"
    ] == ["totp"]

    # The next sign-in asks for the code of the secret just enrolled.
    meta = sign_in_with_totp(user, secret, steps_from_now=1)
    assert claims(meta["access_token"])["amr"] == ["mfa", "otp", "pwd"]

    removed = app_request(client, "delete", "/account/authenticators/totp", session_token)

    assert removed.status_code == 200, removed.content
    assert not Authenticator.objects.filter(user=user).exists()
    assert sorted(
        (event.metadata["type"], event.metadata["authenticator_id"])
        for event in events("accounts.mfa.removed", user)
    ) == [("recovery_codes", recovery.pk), ("totp", totp.pk)]
    assert (
        app_post(
            Client(), "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD}
        ).status_code
        == 200
    )


def test_the_code_that_confirmed_the_enrolment_cannot_also_sign_in(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "100/m"
    user = verified_user()
    client = Client()
    signed_in = app_post(client, "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})
    session_token = signed_in.json()["meta"]["session_token"]
    secret = app_request(client, "get", "/account/authenticators/totp", session_token).json()["meta"][
        "secret"
    ]
    app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, session_token)
    with_step_headroom(seconds=8)
    code = totp_code(secret)
    assert app_post(client, "/account/authenticators/totp", {"code": code}, session_token).status_code == 200

    refused = second_factor(start_sign_in(user), code)

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "incorrect_code"
    assert second_factor(start_sign_in(user), totp_code(secret, steps_from_now=1)).status_code == 200


def test_an_emailed_code_does_not_stand_in_for_a_reauthentication() -> None:
    user, secret = totp_user()
    with_step_headroom()
    pending = start_sign_in(user)
    assert request_email_code(pending).status_code == 200
    live_code = emailed_code()
    meta = second_factor(pending, totp_code(secret)).json()["meta"]  # signed in with the app instead

    refused = app_post(pending.client, "/auth/2fa/reauthenticate", {"code": live_code}, meta["session_token"])

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "incorrect_code"
    assert EmailCode.objects.get(user=user).used_at is None
