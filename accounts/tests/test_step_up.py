"""Step-up over HTTP: the API's sensitive actions need a recent re-authentication of the caller
(password or second factor asked again), with RFC 9470's challenge when it is missing; tokens
carry `auth_time` and `amr`; staff reset a user's second factors (docs/decisions/0012-mfa-and-step-up.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.mfa.models import Authenticator
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, set_token_value
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.exceptions import ReauthenticationRequired
from accounts.models import DeviceSession, User
from accounts.services import session_store
from accounts.tests.factories import (
    DEFAULT_PASSWORD,
    mark_reauthenticated,
    recovery_codes_enrol,
    totp_code,
    totp_enrol,
)
from accounts.tests.headless import APP, app_post, signed_in_meta, verified_user, with_step_headroom
from audit.models import AuditEvent
from oauth_provider.services import application_create

# Revocation marks and cache entries follow commits: these tests really commit.
pytestmark = pytest.mark.django_db(transaction=True)


def challenge(max_age: int = 600) -> str:
    return (
        'Bearer error="insufficient_user_authentication", '
        'error_description="A more recent authentication is required", '
        f'max_age="{max_age}"'
    )


REAUTHENTICATION_REQUIRED = {
    "type": "client_error",
    "errors": [
        {"code": "reauthentication_required", "detail": ReauthenticationRequired.default_detail, "attr": None}
    ],
}


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class SignedIn:
    """An app client after its sign-in: allauth's session token and the JWT pair."""

    user: User
    secret: str | None
    session_token: str
    access_token: str
    refresh_token: str

    def api(self) -> APIClient:
        return bearer(self.access_token)


def sign_in(user: User, secret: str | None = None) -> SignedIn:
    """Sign in over the headless API: the password, then (for a TOTP user) a code."""
    meta = signed_in_meta(user, secret)
    return SignedIn(user, secret, meta["session_token"], meta["access_token"], meta["refresh_token"])


def reauthenticate_with_password(signed_in: SignedIn) -> Any:
    response = app_post(
        Client(), "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, signed_in.session_token
    )
    assert response.status_code == 200, response.content
    return response


def reauthenticate_with_totp(signed_in: SignedIn) -> Any:
    assert signed_in.secret is not None
    # The sign-in used this step's code; a code works once, so the next step's.
    code = totp_code(signed_in.secret, steps_from_now=1)
    response = app_post(Client(), "/auth/2fa/reauthenticate", {"code": code}, signed_in.session_token)
    assert response.status_code == 200, response.content
    return response


def age_authentication(session_token: str, *, seconds: float) -> None:
    """Move every authentication record of a sign-in session `seconds` into the past."""
    session = session_store(session_token)
    records = session[AUTHENTICATION_METHODS_SESSION_KEY]
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {**record, "at": record["at"] - seconds} for record in records
    ]
    session.save()


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def claims(access_token: str) -> AccessToken:
    return AccessToken(access_token)  # type: ignore[arg-type]  # simplejwt accepts the encoded token


def refresh(token: str) -> Any:
    return APIClient().post("/api/v1/auth/token/refresh/", {"refresh_token": token}, format="json")


def oauth_access_token(user: User) -> str:
    application = application_create(
        name="Photo printer", owner=None, redirect_uris="https://printer.example/callback"
    ).application
    access = get_access_token_model()(
        user=user,
        application=application,
        expires=timezone.now() + timedelta(minutes=10),
        scope="openid users:read users:write",
    )
    set_token_value(access, "oauth-access-step-up")
    access.save()
    return "oauth-access-step-up"


def state_of(user: User) -> dict[str, Any]:
    """What a refused sensitive action must leave as it was."""
    user = User.objects.get(pk=user.pk)
    return {
        "user": User.objects.values().get(pk=user.pk),
        "roles": user.roles,
        "factors": sorted(Authenticator.objects.filter(user=user).values_list("type", flat=True)),
        "live_device_sessions": DeviceSession.objects.filter(user=user, revoked_at__isnull=True).count(),
    }


# --- the sensitive actions ----------------------------------------------------------------------


@dataclass(frozen=True)
class SensitiveAction:
    name: str
    method: str
    path: Callable[[User], str]
    body: dict[str, Any] | None
    success_status: int
    caller_role: str | None  # None: the caller acts on their own account

    def perform(self, client: APIClient, target: User) -> Any:
        return getattr(client, self.method)(self.path(target), self.body, format="json")


SENSITIVE_ACTIONS = [
    SensitiveAction("delete_me", "delete", lambda _: "/api/v1/users/me/", None, 202, None),
    SensitiveAction(
        "roles",
        "put",
        lambda target: f"/api/v1/users/{target.pk}/roles/",
        {"roles": ["moderator"]},
        200,
        "admin",
    ),
    SensitiveAction(
        "lock_down",
        "post",
        lambda target: f"/api/v1/users/{target.pk}/lock-down/",
        {"reason": "Compromised."},
        200,
        "admin",
    ),
    SensitiveAction(
        "reset_mfa", "post", lambda target: f"/api/v1/users/{target.pk}/reset-mfa/", None, 200, "admin"
    ),
    SensitiveAction(
        "change_email",
        "post",
        lambda target: f"/api/v1/users/{target.pk}/change-email/",
        {"email": "moved@example.org", "verified": True},
        200,
        "admin",
    ),
]
sensitive_actions = pytest.mark.parametrize(
    "action", SENSITIVE_ACTIONS, ids=[a.name for a in SENSITIVE_ACTIONS]
)


def caller_and_target(action: SensitiveAction) -> tuple[User, str, User]:
    """A caller with TOTP (staff must have a second factor) and the user the action is about."""
    caller = verified_user(action.caller_role)
    secret = totp_enrol(caller)
    if action.caller_role is None:
        return caller, secret, caller
    target = verified_user()
    totp_enrol(target)
    return caller, secret, target


@sensitive_actions
def test_a_sensitive_action_without_a_reauthentication_is_refused_with_the_step_up_challenge(
    action: SensitiveAction,
) -> None:
    caller, secret, target = caller_and_target(action)
    signed_in = sign_in(caller, secret)  # however fresh, a sign-in is not a re-authentication
    before, events_before = state_of(target), AuditEvent.objects.count()

    response = action.perform(signed_in.api(), target)

    assert response.status_code == 401
    assert response.json() == REAUTHENTICATION_REQUIRED
    assert response["WWW-Authenticate"] == challenge()
    assert state_of(target) == before
    assert AuditEvent.objects.count() == events_before


@sensitive_actions
def test_a_sensitive_action_succeeds_after_a_password_reauthentication(action: SensitiveAction) -> None:
    caller, secret, target = caller_and_target(action)
    signed_in = sign_in(caller, secret)

    reauthenticate_with_password(signed_in)
    response = action.perform(signed_in.api(), target)

    assert response.status_code == action.success_status, response.content


@sensitive_actions
def test_a_sensitive_action_succeeds_after_a_totp_reauthentication(action: SensitiveAction) -> None:
    caller, secret, target = caller_and_target(action)
    signed_in = sign_in(caller, secret)

    reauthenticate_with_totp(signed_in)
    response = action.perform(signed_in.api(), target)

    assert response.status_code == action.success_status, response.content
    [reauthenticated] = AuditEvent.objects.filter(
        action="accounts.mfa.authenticated", target_id=str(caller.pk), metadata__reauthentication=True
    )
    assert reauthenticated.metadata["type"] == "totp"


@sensitive_actions
def test_a_reauthentication_older_than_the_step_up_window_is_refused_again(
    action: SensitiveAction, settings: Any
) -> None:
    settings.ACCOUNT_REAUTHENTICATION_TIMEOUT = 60
    caller, secret, target = caller_and_target(action)
    signed_in = sign_in(caller, secret)
    reauthenticate_with_password(signed_in)
    age_authentication(signed_in.session_token, seconds=61)
    before = state_of(target)

    response = action.perform(signed_in.api(), target)

    assert response.status_code == 401
    assert response.json() == REAUTHENTICATION_REQUIRED
    assert response["WWW-Authenticate"] == challenge(max_age=60)
    assert state_of(target) == before


def test_a_wrong_password_at_reauthentication_gives_no_step_up() -> None:
    caller = verified_user("admin")
    secret = totp_enrol(caller)
    target = verified_user()
    signed_in = sign_in(caller, secret)

    response = app_post(
        Client(), "/auth/reauthenticate", {"password": "Not-the-pass-0000"}, signed_in.session_token
    )

    assert response.status_code == 400
    refused = signed_in.api().put(
        f"/api/v1/users/{target.pk}/roles/", {"roles": ["moderator"]}, format="json"
    )
    assert refused.status_code == 401
    assert User.objects.get(pk=target.pk).roles == ["user"]


@sensitive_actions
def test_a_browser_session_steps_up_with_its_own_reauthentication(action: SensitiveAction) -> None:
    caller, _, target = caller_and_target(action)
    browser = APIClient()
    browser.force_login(caller)
    before = state_of(target)

    refused = action.perform(browser, target)

    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == challenge()
    assert state_of(target) == before

    mark_reauthenticated(browser, seconds_ago=601)
    assert action.perform(browser, target).status_code == 401
    assert state_of(target) == before

    mark_reauthenticated(browser)
    response = action.perform(browser, target)

    assert response.status_code == action.success_status, response.content


@sensitive_actions
def test_an_oauth_access_token_never_steps_up(action: SensitiveAction) -> None:
    caller, secret, target = caller_and_target(action)
    reauthenticate_with_password(sign_in(caller, secret))  # a re-authentication elsewhere changes nothing
    before = state_of(target)

    response = action.perform(bearer(oauth_access_token(caller)), target)

    if action.name == "delete_me":
        assert response.status_code == 403  # third-party tokens may never delete the account
        assert response.json()["errors"][0]["code"] == "first_party_only"
    else:
        assert response.status_code == 401
        assert response.json() == REAUTHENTICATION_REQUIRED
        assert response["WWW-Authenticate"] == challenge()
    assert state_of(target) == before


def test_a_caller_the_policies_refuse_gets_403_not_an_invitation_to_reauthenticate() -> None:
    moderator = verified_user("moderator")
    secret = totp_enrol(moderator)
    admin = verified_user("admin")
    totp_enrol(admin)
    signed_in = sign_in(moderator, secret)
    before = state_of(admin)

    for path, body in (("roles", {"roles": []}), ("lock-down", {}), ("reset-mfa", None)):
        method = "put" if path == "roles" else "post"
        response = getattr(signed_in.api(), method)(f"/api/v1/users/{admin.pk}/{path}/", body, format="json")
        assert response.status_code == 403, path
        assert response.json()["errors"][0]["code"] == "permission_denied"
    assert state_of(admin) == before


# --- auth_time and amr ----------------------------------------------------------------------------


def test_a_refresh_after_a_reauthentication_carries_its_newer_auth_time_and_amr(settings: Any) -> None:
    settings.RATELIMIT_SIGNIN = "100/m"
    user = verified_user()
    signed_in = sign_in(user)  # the password alone
    assert claims(signed_in.access_token)["amr"] == ["pwd"]
    device = DeviceSession.objects.get(user=user)
    assert device.auth_time is not None
    # The sign-in happened some time ago.
    earlier = device.auth_time - timedelta(seconds=300)
    age_authentication(signed_in.session_token, seconds=300)
    DeviceSession.objects.filter(pk=device.pk).update(auth_time=earlier)
    signed_in_at = int(earlier.timestamp())

    unchanged = refresh(signed_in.refresh_token)

    assert unchanged.status_code == 200
    before = claims(unchanged.json()["access_token"])
    assert (before["auth_time"], before["amr"]) == (signed_in_at, ["pwd"])

    # The user sets up TOTP (allauth asks for the password again first), then proves it later.
    reauthenticate_with_password(signed_in)
    client = Client()
    headers = {"X-Session-Token": signed_in.session_token}
    secret = client.get(f"{APP}/account/authenticators/totp", headers=headers).json()["meta"]["secret"]
    with_step_headroom()
    activated = app_post(
        client, "/account/authenticators/totp", {"code": totp_code(secret)}, signed_in.session_token
    )
    assert activated.status_code == 200, activated.content
    before_reauthentication = int(time.time())
    reauthenticate_with_totp(replace(signed_in, secret=secret))

    response = refresh(unchanged.json()["refresh_token"])

    assert response.status_code == 200
    access = claims(response.json()["access_token"])
    assert access["amr"] == ["mfa", "otp", "pwd"]
    assert before_reauthentication <= access["auth_time"] <= int(time.time())
    assert access["auth_time"] > signed_in_at
    device.refresh_from_db()
    assert device.auth_time is not None
    assert (device.amr, int(device.auth_time.timestamp())) == (["mfa", "otp", "pwd"], access["auth_time"])


def test_a_password_sign_in_without_a_second_factor_says_so_in_its_tokens() -> None:
    user = verified_user()
    before = int(time.time())

    signed_in = sign_in(user)

    access = claims(signed_in.access_token)
    assert access["amr"] == ["pwd"]
    assert before <= access["auth_time"] <= int(time.time())


# --- resetting a user's second factors ---------------------------------------------------------


def test_reset_mfa_removes_every_factor_signs_the_user_out_and_sends_them_to_enrol_again(
    settings: Any,
) -> None:
    settings.RATELIMIT_SIGNIN = "100/m"
    admin = verified_user("admin")
    admin_secret = totp_enrol(admin)
    target = verified_user("moderator")
    target_secret = totp_enrol(target)
    recovery_codes_enrol(target)
    target_signed_in = sign_in(target, target_secret)
    assert target_signed_in.api().get("/api/v1/sessions/").status_code == 200
    staff = sign_in(admin, admin_secret)
    reauthenticate_with_password(staff)

    response = staff.api().post(f"/api/v1/users/{target.pk}/reset-mfa/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["user"]["id"], body["user"]["has_mfa"], body["user"]["mfa_factors"]) == (
        str(target.pk),
        False,
        [],
    )
    assert body["removed"] == ["recovery_codes", "totp"]
    assert body["revoked"] == {
        "device_sessions": 1,
        "browser_sessions": 1,  # the app's sign-in session (allauth's session token)
        "oauth_access_tokens": 0,
        "oauth_refresh_tokens": 0,
        "oauth_authorization_codes": 0,
    }
    assert not Authenticator.objects.filter(user=target).exists()
    assert target_signed_in.api().get("/api/v1/users/me/").status_code == 401
    assert refresh(target_signed_in.refresh_token).status_code == 401
    [event] = AuditEvent.objects.filter(action="accounts.mfa.reset", target_id=str(target.pk))
    assert (event.actor_id, event.metadata) == (
        str(admin.pk),
        {
            "removed": ["recovery_codes", "totp"],
            # Keys without "token", which the audit trail would redact.
            "revoked": {
                "device_sessions": 1,
                "browser_sessions": 1,
                "oauth_access": 0,
                "oauth_refresh": 0,
                "oauth_authorization_codes": 0,
            },
        },
    )

    # Their next sign-in asks for no code; the API then wants a second factor set up first.
    again = sign_in(target)
    me = again.api().get("/api/v1/users/me/")
    assert (me.status_code, me.json()["mfa_required"], me.json()["has_mfa"]) == (200, True, False)
    sessions = again.api().get("/api/v1/sessions/")
    assert sessions.status_code == 403
    assert sessions.json()["errors"][0]["code"] == "mfa_enrollment_required"


def test_a_moderator_resets_a_plain_users_factors_who_then_signs_in_without_them() -> None:
    moderator = verified_user("moderator")
    secret = totp_enrol(moderator)
    target = verified_user()
    totp_enrol(target)
    staff = sign_in(moderator, secret)
    reauthenticate_with_totp(staff)

    response = staff.api().post(f"/api/v1/users/{target.pk}/reset-mfa/")

    assert response.status_code == 200, response.content
    assert response.json()["removed"] == ["totp"]
    again = sign_in(target)
    assert again.api().get("/api/v1/sessions/").status_code == 200


def test_staff_cannot_reset_their_own_factors() -> None:
    admin = verified_user("admin")
    secret = totp_enrol(admin)
    staff = sign_in(admin, secret)
    reauthenticate_with_password(staff)

    response = staff.api().post(f"/api/v1/users/{admin.pk}/reset-mfa/")

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "cannot_target_self"
    assert Authenticator.objects.filter(user=admin, type=Authenticator.Type.TOTP).exists()
    assert not AuditEvent.objects.filter(action="accounts.mfa.reset").exists()


# --- wrong answers at re-authentication ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/reauthenticate", "/auth/2fa/reauthenticate"])
def test_wrong_answers_at_reauthentication_count_toward_the_lockout(path: str) -> None:
    caller = verified_user("admin")
    secret = totp_enrol(caller)
    target = verified_user()
    signed_in = sign_in(caller, secret)
    wrong = {"password": "Not-the-pass-0000"} if path == "/auth/reauthenticate" else {"code": "000000"}
    if path == "/auth/2fa/reauthenticate" and totp_code(secret, steps_from_now=1) == "000000":
        wrong = {"code": "111111"}

    for _ in range(5):
        assert app_post(Client(), path, wrong, signed_in.session_token).status_code == 400

    assert AuditEvent.objects.filter(action="accounts.user.locked_out", target_id=str(caller.pk)).count() == 1
    right = (
        {"password": DEFAULT_PASSWORD}
        if path == "/auth/reauthenticate"
        else {"code": totp_code(secret, steps_from_now=1)}
    )
    locked = app_post(Client(), path, right, signed_in.session_token)
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= 60
    refused = signed_in.api().put(
        f"/api/v1/users/{target.pk}/roles/", {"roles": ["moderator"]}, format="json"
    )
    assert refused.status_code == 401
    assert User.objects.get(pk=target.pk).roles == ["user"]
