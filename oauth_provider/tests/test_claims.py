"""Claims over HTTP: the ID token and userinfo per scope, mapped from the user model, and the
sign-in they carry (`auth_time`, `amr`, `acr`), also after a refresh
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY
from allauth.account.models import EmailAddress
from django.test import Client
from oauthlib.common import Request as OAuthlibRequest

from accounts.models import User
from accounts.tests.factories import recovery_codes_enrol, totp_code, totp_enrol
from oauth_provider.models import Application, IDTokenAuthentication
from oauth_provider.tests.browser import (
    LOGIN_URL,
    SECOND_FACTOR_URL,
    TOKEN_URL,
    authorize_path,
    code_from,
    id_token_claims,
    member,
    oauth_client,
    password_step,
    pkce,
    redeem,
    tokens_for,
    userinfo,
)
from oauth_provider.validators import OAuth2Validator

pytestmark = pytest.mark.django_db

ISSUER = "http://127.0.0.1:8000"
# Claims of every ID token that are not about the user (RFC 7519, OIDC Core §2 and §3.1.3.6).
PROTOCOL_CLAIMS = {"iss", "aud", "exp", "iat", "jti", "at_hash", "auth_time", "amr", "acr", "nonce"}


@pytest.fixture
def alice() -> User:
    return member(username="alice_liddell", display_name="Alice Liddell")


@pytest.fixture
def trusted() -> Application:
    return oauth_client(name="Our own app", trusted=True)


def signed_in_with_password(user: User) -> Client:
    client = Client()
    assert password_step(client, user, path=LOGIN_URL)["Location"] == "/"
    return client


def signed_in_with_totp(user: User, secret: str) -> Client:
    client = Client()
    assert password_step(client, user, path=LOGIN_URL)["Location"] == SECOND_FACTOR_URL
    assert client.post(SECOND_FACTOR_URL, {"code": totp_code(secret)})["Location"] == "/"
    return client


def last_sign_in(client: Client) -> int:
    return int(max(record["at"] for record in client.session[AUTHENTICATION_METHODS_SESSION_KEY]))


def user_claims(claims: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in claims.items() if key not in PROTOCOL_CLAIMS}


# --- claims per scope ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("openid", {"sub"}),
        ("openid profile", {"sub", "name", "preferred_username", "updated_at"}),
        ("openid email", {"sub", "email", "email_verified"}),
        (
            "openid profile email",
            {"sub", "name", "preferred_username", "updated_at", "email", "email_verified"},
        ),
    ],
)
def test_id_token_and_userinfo_carry_the_claims_of_the_scopes(
    alice: User, trusted: Application, scope: str, expected: set[str]
) -> None:
    client = signed_in_with_password(alice)
    alice.refresh_from_db()
    every_claim = {
        "sub": str(alice.pk),
        "name": "Alice Liddell",
        "preferred_username": "alice_liddell",
        "updated_at": int(alice.updated_at.timestamp()),
        "email": "alice_liddell@example.com",
        "email_verified": True,
    }

    tokens = tokens_for(client, trusted, scope=scope, nonce="n-0S6_WzA2Mj")

    claims = id_token_claims(tokens["id_token"], trusted)
    assert user_claims(claims) == {key: every_claim[key] for key in expected}
    assert (claims["iss"], claims["aud"], claims["nonce"]) == (ISSUER, trusted.client_id, "n-0S6_WzA2Mj")
    assert claims["exp"] - claims["iat"] == 300  # ID_TOKEN_EXPIRE_SECONDS
    response = userinfo(tokens["access_token"])
    assert response.status_code == 200
    assert response.json() == {key: every_claim[key] for key in expected}


def test_email_verified_is_false_while_the_primary_address_is_unverified(trusted: Application) -> None:
    bob = member(username="bob")
    client = signed_in_with_password(bob)
    EmailAddress.objects.filter(user=bob).update(verified=False)

    tokens = tokens_for(client, trusted, scope="openid email")

    assert user_claims(id_token_claims(tokens["id_token"], trusted)) == {
        "sub": str(bob.pk),
        "email": "bob@example.com",
        "email_verified": False,
    }
    assert userinfo(tokens["access_token"]).json()["email_verified"] is False


def test_userinfo_follows_profile_changes(alice: User, trusted: Application) -> None:
    client = signed_in_with_password(alice)
    tokens = tokens_for(client, trusted, scope="openid profile")
    User.objects.filter(pk=alice.pk).update(display_name="ALICE LIDDELL")

    assert userinfo(tokens["access_token"]).json()["name"] == "ALICE LIDDELL"


def test_a_deactivated_user_gets_no_claims_but_sub(alice: User, trusted: Application) -> None:
    alice.is_active = False
    request = OAuthlibRequest("https://testserver/o/userinfo/")
    request.user = alice
    request.scopes = ["openid", "profile", "email"]

    assert OAuth2Validator().get_oidc_claims(None, None, request) == {"sub": str(alice.pk)}


# --- the sign-in: auth_time, amr, acr ---------------------------------------------------------------


def test_a_password_sign_in_is_amr_pwd_and_acr_1(alice: User, trusted: Application) -> None:
    client = signed_in_with_password(alice)

    claims = id_token_claims(tokens_for(client, trusted)["id_token"], trusted)

    assert (claims["auth_time"], claims["amr"], claims["acr"]) == (last_sign_in(client), ["pwd"], "1")


def test_a_totp_sign_in_has_otp_and_mfa_in_amr_and_acr_2(alice: User, trusted: Application) -> None:
    client = signed_in_with_totp(alice, totp_enrol(alice))

    claims = id_token_claims(tokens_for(client, trusted)["id_token"], trusted)

    assert (claims["auth_time"], claims["amr"], claims["acr"]) == (
        last_sign_in(client),
        ["mfa", "otp", "pwd"],
        "2",
    )


def test_a_recovery_code_sign_in_is_otp_too(alice: User, trusted: Application) -> None:
    totp_enrol(alice)
    [code, *_] = recovery_codes_enrol(alice)
    client = Client()
    password_step(client, alice, path=LOGIN_URL)
    assert client.post(SECOND_FACTOR_URL, {"code": code})["Location"] == "/"

    claims = id_token_claims(tokens_for(client, trusted)["id_token"], trusted)

    assert (claims["amr"], claims["acr"]) == (["mfa", "otp", "pwd"], "2")


def test_a_session_without_sign_in_records_falls_back_to_the_last_login(
    alice: User, trusted: Application
) -> None:
    client = Client()
    client.force_login(alice)
    alice.refresh_from_db()

    claims = id_token_claims(tokens_for(client, trusted)["id_token"], trusted)

    assert claims["auth_time"] == int(alice.last_login.timestamp())  # type: ignore[union-attr]
    assert "amr" not in claims
    assert "acr" not in claims


def test_the_sign_in_rides_with_the_code_to_the_token_request(alice: User, trusted: Application) -> None:
    """The token request has no session, and the browser's may be gone by then."""
    client = signed_in_with_totp(alice, totp_enrol(alice))
    signed_in_at = last_sign_in(client)
    challenge = pkce()
    code = code_from(client.get(authorize_path(trusted, challenge)))
    client.logout()

    claims = id_token_claims(redeem(Client(), trusted, code, challenge)["id_token"], trusted)

    assert (claims["auth_time"], claims["amr"], claims["acr"]) == (signed_in_at, ["mfa", "otp", "pwd"], "2")


def test_a_refreshed_id_token_keeps_the_original_sign_in(alice: User, trusted: Application) -> None:
    client = signed_in_with_totp(alice, totp_enrol(alice))
    tokens = tokens_for(client, trusted, scope="openid profile offline_access")
    first = id_token_claims(tokens["id_token"], trusted)
    time.sleep(1.1)

    refreshed = Client().post(
        TOKEN_URL,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": trusted.client_id,
        },
    )

    assert refreshed.status_code == 200, refreshed.content
    second = id_token_claims(refreshed.json()["id_token"], trusted)
    assert second["iat"] > first["iat"]
    assert (second["auth_time"], second["amr"], second["acr"]) == (
        first["auth_time"],
        first["amr"],
        first["acr"],
    )
    assert user_claims(second) == user_claims(first)
    assert IDTokenAuthentication.objects.count() == 2
