"""WebAuthn security keys and passkeys over allauth's headless API, with a software authenticator.

Enrolment (after a re-authentication), the second factor of a password sign-in, passwordless
sign-in with a passkey, re-authentication with a key, the MFA requirement of staff, and the
assertions that must never sign anyone in (docs/decisions/0012-mfa-and-step-up.md). The requests
come to `testserver`, so the RP ID is `testserver` and the origin `https://testserver`; the tests
run with `MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN` off (DEBUG is false), so fido2 checks the origin.
"""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from cryptography.hazmat.primitives.asymmetric import ec
from django.core import mail
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import AccountLockout, DeviceSession, User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.webauthn_authenticator import SoftwareAuthenticator
from audit.models import AuditEvent

# Adding a key drops the cached user and generates recovery codes when the transaction commits.
pytestmark = pytest.mark.django_db(transaction=True)

APP = "/_allauth/app/v1"
BROWSER = "/_allauth/browser/v1"
INCORRECT_CREDENTIAL = {
    "status": 400,
    "errors": [
        {
            "message": "Incorrect code.",
            "code": "incorrect_code",
            "param": "credential",
            "detail": "Incorrect code.",
            "attr": "credential",
        }
    ],
    "type": "validation_error",
}
# A refused registration: allauth raises from the form's clean(), so the error names no field.
INCORRECT_REGISTRATION = {
    "status": 400,
    "errors": [
        {"message": "Incorrect code.", "code": "incorrect_code", "detail": "Incorrect code.", "attr": None}
    ],
    "type": "validation_error",
}


def app_get(client: Client, path: str, session_token: str | None = None) -> Any:
    headers = {"X-Session-Token": session_token} if session_token else {}
    return client.get(f"{APP}{path}", headers=headers)


def app_post(client: Client, path: str, body: dict[str, Any], session_token: str | None = None) -> Any:
    headers = {"X-Session-Token": session_token} if session_token else {}
    return client.post(f"{APP}{path}", body, content_type="application/json", headers=headers)


def verified_user(**fields: Any) -> User:
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    return user


def password_sign_in(client: Client, user: User) -> Any:
    return app_post(client, "/auth/login", {"username": user.username, "password": DEFAULT_PASSWORD})


def signed_in_session_token(user: User) -> str:
    """Sign `user` (who has no second factor yet) in with their password; the session token."""
    response = password_sign_in(Client(), user)
    assert response.status_code == 200, response.content
    token: str = response.json()["meta"]["session_token"]
    return token


def security_key_enrol(user: User, *, passwordless: bool = False) -> SoftwareAuthenticator:
    """Add a key the way an app does: sign in, re-authenticate, create the credential, post it."""
    client, key = Client(), SoftwareAuthenticator()
    token = signed_in_session_token(user)
    assert app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, token).status_code == 200
    options = app_get(
        client, "/account/authenticators/webauthn" + ("?passwordless" if passwordless else ""), token
    )
    assert options.status_code == 200, options.content
    body: dict[str, Any] = {
        "name": "Desk key",
        "credential": key.create(options.json()["data"]["creation_options"]),
    }
    if passwordless:
        body["passwordless"] = True
    added = app_post(client, "/account/authenticators/webauthn", body, token)
    assert added.status_code == 200, added.content
    return key


def pending_second_factor(client: Client, user: User) -> str:
    """Sign in with the password up to the pending second factor; the session token."""
    response = password_sign_in(client, user)
    assert response.status_code == 401, response.content
    token: str = response.json()["meta"]["session_token"]
    return token


def request_options(client: Client, path: str, session_token: str | None = None) -> dict[str, Any]:
    response = app_get(client, path, session_token)
    assert response.status_code == 200, response.content
    options: dict[str, Any] = response.json()["data"]["request_options"]
    return options


def second_factor(client: Client, session_token: str, credential: Any) -> Any:
    return app_post(client, "/auth/webauthn/authenticate", {"credential": credential}, session_token)


def security_key_sign_in(user: User, key: SoftwareAuthenticator) -> dict[str, Any]:
    """A whole password + security key sign-in; the `meta` with the token pair."""
    client = Client()
    token = pending_second_factor(client, user)
    options = request_options(client, "/auth/webauthn/authenticate", token)
    response = second_factor(client, token, key.get(options))
    assert response.status_code == 200, response.content
    meta: dict[str, Any] = response.json()["meta"]
    return meta


def claims(access_token: str) -> dict[str, Any]:
    return dict(AccessToken(access_token).payload)  # type: ignore[arg-type]


def refresh_claims(refresh_token: str) -> dict[str, Any]:
    return dict(RefreshToken(refresh_token).payload)  # type: ignore[arg-type]


def me(access_token: str) -> Any:
    return APIClient().get("/api/v1/users/me/", HTTP_AUTHORIZATION=f"Bearer {access_token}")


def signed_in_devices(access_token: str) -> Any:
    return APIClient().get("/api/v1/sessions/", HTTP_AUTHORIZATION=f"Bearer {access_token}")


def audit_of(user: User, action: str) -> list[dict[str, Any]]:
    """The user's audit rows of `action`: metadata and outcome.

    Without `passwordless`: the audit service redacts every key that contains "password", so the
    flag accounts.receivers records is stored as "[REDACTED]" (see the expected failure below).
    """
    events = AuditEvent.objects.filter(action=action, target_id=str(user.pk)).order_by("id")
    return [
        {
            key: value
            for key, value in dict(event.metadata, outcome=event.outcome).items()
            if key != "passwordless"
        }
        for event in events
    ]


FAILED_EVENT = "accounts.mfa.authentication_failed"


def state_of(user: User) -> dict[str, Any]:
    """What a refused assertion must leave as it was: sessions, factors and their use, audit trail
    (but for the record of the failure), and how many failures count toward the lockout."""
    return {
        "device_sessions": sorted(
            str(pk) for pk in DeviceSession.objects.filter(user=user).values_list("pk", flat=True)
        ),
        "authenticators": sorted(
            Authenticator.objects.filter(user=user).values_list("type", "last_used_at", "data")
        ),
        "audit_events": list(
            AuditEvent.objects.exclude(action=FAILED_EVENT).order_by("id").values_list("id", flat=True)
        ),
        "last_login": User.objects.get(pk=user.pk).last_login,
        "failures": failures_of(user),
    }


def failures_of(user: User) -> tuple[int, int]:
    """(failure events recorded about the user, failed attempts counted toward their lockout)."""
    events = AuditEvent.objects.filter(action=FAILED_EVENT, target_id=str(user.pk)).count()
    attempts = AccountLockout.objects.filter(user=user).values_list("failed_attempts", flat=True).first() or 0
    return events, attempts


def after_one_failure(before: dict[str, Any]) -> dict[str, Any]:
    """`before`, with the refused assertion recorded and counted toward the lockout."""
    events, attempts = before["failures"]
    return {**before, "failures": (events + 1, attempts + 1)}


def assert_still_pending(client: Client, session_token: str) -> None:
    """The sign-in still waits for its second factor: nobody is signed in on that session."""
    response = app_get(client, "/auth/session", session_token)
    assert response.status_code == 401
    body = response.json()
    assert body["meta"]["is_authenticated"] is False
    pending = [flow for flow in body["data"]["flows"] if flow.get("is_pending")]
    assert pending == [
        {"id": "mfa_authenticate", "is_pending": True, "types": ["recovery_codes", "webauthn"]}
    ]


# --- enrolment --------------------------------------------------------------------------------------


def test_signed_in_user_adds_a_security_key_after_reauthenticating() -> None:
    user = verified_user()
    client, key = Client(), SoftwareAuthenticator()
    token = signed_in_session_token(user)

    refused = app_get(client, "/account/authenticators/webauthn", token)

    assert refused.status_code == 401  # allauth asks for a fresh proof first
    assert {"id": "reauthenticate"} in refused.json()["data"]["flows"]
    assert not Authenticator.objects.filter(user=user).exists()

    assert app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, token).status_code == 200
    options = app_get(client, "/account/authenticators/webauthn", token)
    assert options.status_code == 200
    creation_options = options.json()["data"]["creation_options"]["publicKey"]
    assert creation_options["rp"] == {"id": "testserver", "name": "Identity"}
    assert creation_options["excludeCredentials"] == []
    mail.outbox.clear()

    added = app_post(
        client,
        "/account/authenticators/webauthn",
        {"name": "Desk key", "credential": key.create(options.json()["data"]["creation_options"])},
        token,
    )

    assert added.status_code == 200, added.content
    data = added.json()["data"]
    assert {k: data[k] for k in ("type", "name", "is_passwordless", "last_used_at")} == {
        "type": "webauthn",
        "name": "Desk key",
        "is_passwordless": False,
        "last_used_at": None,
    }
    assert added.json()["meta"] == {"recovery_codes_generated": True}
    webauthn = Authenticator.objects.get(user=user, type=Authenticator.Type.WEBAUTHN)
    assert webauthn.wrap().authenticator_data.credential_data.credential_id == key.credential_id
    assert sorted(Authenticator.objects.filter(user=user).values_list("type", flat=True)) == [
        "recovery_codes",
        "webauthn",
    ]
    recovery_codes = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    assert audit_of(user, "accounts.mfa.enrolled") == [
        {"type": "webauthn", "authenticator_id": webauthn.pk, "outcome": "success"},
        {"type": "recovery_codes", "authenticator_id": recovery_codes.pk, "outcome": "success"},
    ]
    assert [message.to for message in mail.outbox] == [[user.email]]  # "a security key was added"


@pytest.mark.parametrize("origin", ["https://evil.example", "http://testserver"])
def test_security_key_created_for_another_origin_is_refused(origin: str) -> None:
    user = verified_user()
    client, key = Client(), SoftwareAuthenticator(origin=origin)
    token = signed_in_session_token(user)
    assert app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, token).status_code == 200
    options = app_get(client, "/account/authenticators/webauthn", token).json()["data"]["creation_options"]
    before = state_of(user)

    response = app_post(
        client, "/account/authenticators/webauthn", {"name": "Key", "credential": key.create(options)}, token
    )

    assert response.status_code == 400
    assert response.json() == INCORRECT_REGISTRATION
    assert state_of(user) == before
    assert not Authenticator.objects.filter(user=user).exists()


# --- the second factor of a password sign-in ----------------------------------------------------


def test_password_sign_in_completes_with_a_security_key_and_issues_tokens() -> None:
    user = verified_user()
    key = security_key_enrol(user)
    webauthn = Authenticator.objects.get(user=user, type=Authenticator.Type.WEBAUTHN)
    client = Client()

    login = password_sign_in(client, user)

    assert login.status_code == 401
    assert "access_token" not in login.json()["meta"]
    assert {
        "id": "mfa_authenticate",
        "is_pending": True,
        "types": ["recovery_codes", "webauthn"],
    } in login.json()["data"]["flows"]
    token = login.json()["meta"]["session_token"]
    options = request_options(client, "/auth/webauthn/authenticate", token)
    assert options["publicKey"]["rpId"] == "testserver"
    assert options["publicKey"]["allowCredentials"] == [
        {"type": "public-key", "id": key.encoded_credential_id}
    ]

    response = second_factor(client, token, key.get(options))

    assert response.status_code == 200, response.content
    meta = response.json()["meta"]
    assert meta["is_authenticated"] is True
    assert claims(meta["access_token"])["amr"] == ["hwk", "mfa", "pwd"]
    assert refresh_claims(meta["refresh_token"])["amr"] == ["hwk", "mfa", "pwd"]
    assert me(meta["access_token"]).json()["username"] == user.username
    assert audit_of(user, "accounts.mfa.authenticated") == [
        {
            "type": "webauthn",
            "authenticator_id": webauthn.pk,
            "reauthentication": False,
            "outcome": "success",
        }
    ]
    webauthn.refresh_from_db()
    assert webauthn.last_used_at is not None


def test_security_key_reauthentication_allows_adding_another_key() -> None:
    user = verified_user()
    key = security_key_enrol(user)
    webauthn = Authenticator.objects.get(user=user, type=Authenticator.Type.WEBAUTHN)
    client = Client()
    token = security_key_sign_in(user, key)["session_token"]
    assert app_get(client, "/account/authenticators/webauthn", token).status_code == 401
    options = request_options(client, "/auth/webauthn/reauthenticate", token)

    response = app_post(client, "/auth/webauthn/reauthenticate", {"credential": key.get(options)}, token)

    assert response.status_code == 200, response.content
    reauthentication = dict(response.json()["data"]["methods"][-1])
    assert isinstance(reauthentication.pop("at"), float)
    assert reauthentication == {
        "method": "mfa",
        "id": webauthn.pk,
        "type": "webauthn",
        "reauthenticated": True,
    }
    assert audit_of(user, "accounts.mfa.authenticated")[-1] == {
        "type": "webauthn",
        "authenticator_id": webauthn.pk,
        "reauthentication": True,
        "outcome": "success",
    }
    creation = app_get(client, "/account/authenticators/webauthn", token)
    assert creation.status_code == 200
    assert creation.json()["data"]["creation_options"]["publicKey"]["excludeCredentials"] == [
        {"type": "public-key", "id": key.encoded_credential_id}
    ]


# --- passwordless sign-in with a passkey -----------------------------------------------------------


def test_passkey_signs_an_app_in_without_a_password() -> None:
    user = verified_user()
    passkey = security_key_enrol(user, passwordless=True)
    webauthn = Authenticator.objects.get(user=user, type=Authenticator.Type.WEBAUTHN)
    assert webauthn.wrap().is_passwordless is True
    client = Client()
    begun = app_get(client, "/auth/webauthn/login")
    assert begun.status_code == 200
    options = begun.json()["data"]["request_options"]
    assert options["publicKey"]["allowCredentials"] == []  # the passkey names its user itself
    assert options["publicKey"]["userVerification"] == "required"
    token = begun.json()["meta"]["session_token"]

    response = app_post(client, "/auth/webauthn/login", {"credential": passkey.get(options)}, token)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["meta"]["is_authenticated"] is True
    assert [(m["method"], m.get("type"), m.get("passwordless")) for m in body["data"]["methods"]] == [
        ("mfa", "webauthn", True)
    ]
    assert claims(body["meta"]["access_token"])["amr"] == ["hwk"]
    assert claims(body["meta"]["access_token"])["sub"] == str(user.pk)
    assert me(body["meta"]["access_token"]).json()["username"] == user.username
    assert audit_of(user, "accounts.mfa.authenticated") == [
        {
            "type": "webauthn",
            "authenticator_id": webauthn.pk,
            "reauthentication": False,
            "outcome": "success",
        }
    ]
    assert audit_of(user, "accounts.user.signed_in")[-1] == {
        "via": f"{APP}/auth/webauthn/login",
        "outcome": "success",
    }


def test_passkey_signs_a_browser_in_without_a_password() -> None:
    user = verified_user()
    passkey = security_key_enrol(user, passwordless=True)
    browser = Client()
    begun = browser.get(f"{BROWSER}/auth/webauthn/login")
    assert begun.status_code == 200

    response = browser.post(
        f"{BROWSER}/auth/webauthn/login",
        {"credential": passkey.get(begun.json()["data"]["request_options"])},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["meta"] == {"is_authenticated": True}  # a session cookie, no tokens
    assert browser.get("/api/v1/users/me/").json()["username"] == user.username


# --- refusals: none signs anyone in, none changes anything ---------------------------------------
#
# allauth sends `authentication_failed` only from its code forms (allauth/mfa/base/forms.py); its
# WebAuthn forms (allauth/mfa/webauthn/forms.py) raise `incorrect_code` without a signal, so a
# refused assertion leaves no `accounts.mfa.authentication_failed` row: the audit trail is unchanged.


def test_second_factor_signed_by_another_key_is_refused() -> None:
    user = verified_user()
    key = security_key_enrol(user)
    client = Client()
    token = pending_second_factor(client, user)
    options = request_options(client, "/auth/webauthn/authenticate", token)
    before = state_of(user)

    forged = key.get(options, signing_key=ec.generate_private_key(ec.SECP256R1()))
    response = second_factor(client, token, forged)

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == after_one_failure(before)
    assert_still_pending(client, token)


def test_replayed_second_factor_assertion_is_refused() -> None:
    user = verified_user()
    key = security_key_enrol(user)
    first, second = Client(), Client()
    first_token = pending_second_factor(first, user)
    captured = key.get(request_options(first, "/auth/webauthn/authenticate", first_token))
    assert second_factor(first, first_token, captured).status_code == 200
    token = pending_second_factor(second, user)
    request_options(second, "/auth/webauthn/authenticate", token)  # a new challenge for this sign-in
    before = state_of(user)

    response = second_factor(second, token, captured)

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == after_one_failure(before)
    assert_still_pending(second, token)


def test_assertion_for_another_sessions_challenge_is_refused() -> None:
    user = verified_user()
    key = security_key_enrol(user)
    victim, attacker = Client(), Client()
    victim_token = pending_second_factor(victim, user)
    attacker_token = pending_second_factor(attacker, user)
    victim_options = request_options(victim, "/auth/webauthn/authenticate", victim_token)
    request_options(attacker, "/auth/webauthn/authenticate", attacker_token)
    assertion = key.get(victim_options)
    before = state_of(user)

    response = second_factor(attacker, attacker_token, assertion)

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == after_one_failure(before)
    assert_still_pending(attacker, attacker_token)
    # The assertion was good for the session that asked for it.
    assert second_factor(victim, victim_token, assertion).status_code == 200


def test_assertion_posted_before_any_challenge_is_refused() -> None:
    user = verified_user()
    key = security_key_enrol(user)
    elsewhere, client = Client(), Client()
    other_token = pending_second_factor(elsewhere, user)
    assertion = key.get(request_options(elsewhere, "/auth/webauthn/authenticate", other_token))
    token = pending_second_factor(client, user)  # never asked for request options
    before = state_of(user)

    response = second_factor(client, token, assertion)

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == after_one_failure(before)
    assert_still_pending(client, token)


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://testserver", "https://testserver.example"]
)
def test_assertion_made_for_another_origin_is_refused(origin: str) -> None:
    user = verified_user()
    key = security_key_enrol(user)
    client = Client()
    token = pending_second_factor(client, user)
    options = request_options(client, "/auth/webauthn/authenticate", token)
    before = state_of(user)

    response = second_factor(client, token, key.get(options, origin=origin))

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == after_one_failure(before)
    assert_still_pending(client, token)


@pytest.mark.parametrize(
    ("credential", "code", "message"),
    [
        ({}, "required", "This field is required."),
        ("not a credential", "invalid", "Enter a valid JSON."),
        (
            {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}},
            "incorrect_code",
            "Incorrect code.",
        ),
    ],
    ids=["empty", "not-json", "no-response"],
)
def test_malformed_credential_is_refused(credential: Any, code: str, message: str) -> None:
    user = verified_user()
    security_key_enrol(user)
    client = Client()
    token = pending_second_factor(client, user)
    request_options(client, "/auth/webauthn/authenticate", token)
    before = state_of(user)

    response = second_factor(client, token, credential)

    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "errors": [
            {"message": message, "code": code, "param": "credential", "detail": message, "attr": "credential"}
        ],
        "type": "validation_error",
    }
    assert state_of(user) == after_one_failure(before)
    assert_still_pending(client, token)


def test_passkey_login_signed_by_another_key_is_refused() -> None:
    user = verified_user()
    passkey = security_key_enrol(user, passwordless=True)
    client = Client()
    begun = app_get(client, "/auth/webauthn/login")
    token = begun.json()["meta"]["session_token"]
    before = state_of(user)

    forged = passkey.get(
        begun.json()["data"]["request_options"], signing_key=ec.generate_private_key(ec.SECP256R1())
    )
    response = app_post(client, "/auth/webauthn/login", {"credential": forged}, token)

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == before
    session = app_get(client, "/auth/session", token)
    assert session.status_code == 401
    assert session.json()["meta"]["is_authenticated"] is False


def test_replayed_passkey_login_is_refused() -> None:
    user = verified_user()
    passkey = security_key_enrol(user, passwordless=True)
    first, second = Client(), Client()
    begun = app_get(first, "/auth/webauthn/login")
    captured = passkey.get(begun.json()["data"]["request_options"])
    signed_in = app_post(
        first, "/auth/webauthn/login", {"credential": captured}, begun.json()["meta"]["session_token"]
    )
    assert signed_in.status_code == 200
    token = app_get(second, "/auth/webauthn/login").json()["meta"]["session_token"]
    before = state_of(user)

    response = app_post(second, "/auth/webauthn/login", {"credential": captured}, token)

    assert response.status_code == 400
    assert response.json() == INCORRECT_CREDENTIAL
    assert state_of(user) == before
    assert app_get(second, "/auth/session", token).json()["meta"]["is_authenticated"] is False


def sign_in_then_again_with(user: User, *, sign_count: int) -> tuple[Client, str, Any]:
    """Sign in with the user's key at sign count 7, then from another browser with `sign_count`:
    that browser, its session token, and the answer to its second factor."""
    key = security_key_enrol(user)
    first = Client()
    first_token = pending_second_factor(first, user)
    options = request_options(first, "/auth/webauthn/authenticate", first_token)
    assert second_factor(first, first_token, key.get(options, sign_count=7)).status_code == 200
    clone = Client()
    clone_token = pending_second_factor(clone, user)
    clone_options = request_options(clone, "/auth/webauthn/authenticate", clone_token)
    return (
        clone,
        clone_token,
        second_factor(clone, clone_token, key.get(clone_options, sign_count=sign_count)),
    )


def test_assertion_whose_sign_count_did_not_advance_is_refused() -> None:
    _, _, response = sign_in_then_again_with(verified_user(), sign_count=7)

    assert response.status_code == 400


def test_passkey_sign_in_is_audited_as_passwordless() -> None:
    user = verified_user()
    passkey = security_key_enrol(user, passwordless=True)
    client = Client()
    begun = app_get(client, "/auth/webauthn/login")
    credential = passkey.get(begun.json()["data"]["request_options"])

    response = app_post(
        client, "/auth/webauthn/login", {"credential": credential}, begun.json()["meta"]["session_token"]
    )

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="accounts.mfa.authenticated", target_id=str(user.pk))
    assert event.metadata["passwordless"] is True


# --- the MFA requirement ----------------------------------------------------------------------------


def test_staff_user_whose_only_factor_is_a_security_key_meets_the_mfa_requirement() -> None:
    user = verified_user(is_staff=True)
    access_token = password_sign_in(Client(), user).json()["meta"]["access_token"]
    before = me(access_token).json()
    assert (before["has_mfa"], before["mfa_factors"], before["mfa_required"]) == (False, [], True)
    refused = signed_in_devices(access_token)
    assert refused.status_code == 403
    assert refused.json() == {
        "type": "client_error",
        "errors": [
            {
                "code": "mfa_enrollment_required",
                "detail": "Your account must have a second factor before you can do this: set one up "
                "(an authenticator app or a security key), then try again.",
                "attr": None,
            }
        ],
    }

    key = security_key_enrol(user)

    after = me(access_token).json()
    assert (after["has_mfa"], after["mfa_factors"], after["mfa_required"]) == (True, ["webauthn"], True)
    assert signed_in_devices(access_token).status_code == 200
    # And the next sign-in asks for the key.
    meta = security_key_sign_in(user, key)
    assert claims(meta["access_token"])["amr"] == ["hwk", "mfa", "pwd"]
    signed_in = me(meta["access_token"]).json()
    assert (signed_in["has_mfa"], signed_in["mfa_factors"]) == (True, ["webauthn"])
    assert signed_in_devices(meta["access_token"]).status_code == 200


def test_a_cloned_key_is_refused_and_recorded() -> None:
    clone, clone_token, response = sign_in_then_again_with(verified_user(), sign_count=5)

    assert response.status_code == 400
    assert_still_pending(clone, clone_token)
    [regressed] = AuditEvent.objects.filter(action="accounts.mfa.webauthn_counter_regressed")
    assert (regressed.metadata["stored"], regressed.metadata["presented"]) == (7, 5)
