"""The resource servers' bearer challenges (RFC 6750 §3) on the API and on `/o/userinfo/`, and the
`Bearer` scheme read in any case (RFC 9110 §11.1)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from accounts.tests.factories import UserFactory
from accounts.tests.headless import signed_in_meta, verified_user
from oauth_provider.tests.token_flows import (
    USERINFO_URL,
    access_token_row,
    oauth_error,
    registered_client,
    tokens,
)

pytestmark = pytest.mark.django_db

ME = "/api/v1/users/me/"
RESOURCE_METADATA = 'resource_metadata="http://127.0.0.1:8000/.well-known/oauth-protected-resource"'
NO_TOKEN_CHALLENGE = f'Bearer realm="api", {RESOURCE_METADATA}'
INVALID_TOKEN_CHALLENGE = f'Bearer realm="api", error="invalid_token", {RESOURCE_METADATA}'
API_SCOPES = "openid users:read"


def oauth_access_token() -> str:
    client = registered_client(allowed_scopes=API_SCOPES)
    access_token: str = tokens(client, user=UserFactory.create(), scope=API_SCOPES)["access_token"]
    return access_token


def expired_oauth_access_token() -> str:
    access_token = oauth_access_token()
    row = access_token_row(access_token)
    row.expires = timezone.now() - timedelta(minutes=1)
    row.save(update_fields=["expires"])
    return access_token


def first_party_access_token() -> str:
    access_token: str = signed_in_meta(verified_user())["access_token"]
    return access_token


def expired_first_party_access_token() -> str:
    """The same token signed again with an `exp` in the past: genuine, only expired."""
    key = jwt_settings.SIGNING_KEY
    claims = jwt.decode(
        first_party_access_token(), key, algorithms=[jwt_settings.ALGORITHM], options={"verify_aud": False}
    )
    claims["exp"] = int(time.time()) - 60
    return jwt.encode(claims, key, algorithm=jwt_settings.ALGORITHM)


def api_me(authorization: str) -> Any:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.get(ME)


def userinfo(authorization: str) -> Any:
    return Client().get(USERINFO_URL, headers={"Authorization": authorization} if authorization else {})


# --- RFC 6750 §3.1: error="invalid_token" when a token was presented and refused ---------------------


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda: "not-a-token", id="unknown"),
        pytest.param(lambda: "a.b.c", id="malformed-jwt"),
        pytest.param(expired_oauth_access_token, id="expired-oauth-token"),
        pytest.param(expired_first_party_access_token, id="expired-jwt"),
    ],
)
def test_an_api_401_for_a_refused_token_says_invalid_token(make_token: Any) -> None:
    response = api_me(f"Bearer {make_token()}")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert response.json() == {
        "type": "client_error",
        "errors": [
            {
                "code": "token_not_valid",
                "detail": "The access token is invalid, expired or revoked.",
                "attr": None,
            }
        ],
    }


def test_an_api_401_without_a_token_carries_no_error_code() -> None:
    """§3.1: a request without credentials gets the challenge alone."""
    response = api_me("")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == NO_TOKEN_CHALLENGE


# --- /o/userinfo/: the same challenge, with the RFC 9728 hint ------------------------------------------


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda: "not-a-token", id="unknown"),
        pytest.param(expired_oauth_access_token, id="expired-oauth-token"),
    ],
)
def test_a_userinfo_401_for_a_refused_token_says_invalid_token_and_where_the_metadata_is(
    make_token: Any,
) -> None:
    response = userinfo(f"Bearer {make_token()}")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == INVALID_TOKEN_CHALLENGE
    assert response.json() == oauth_error("invalid_token", "The access token is invalid, expired or revoked.")


def test_a_userinfo_401_without_a_token_points_at_the_metadata() -> None:
    response = userinfo("")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == NO_TOKEN_CHALLENGE
    assert response.json() == oauth_error(
        "invalid_token", "An access token is required, in the Authorization header."
    )


# --- RFC 9110 §11.1: the scheme in any case ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_the_api_reads_the_bearer_scheme_in_any_case(scheme: str) -> None:
    first_party = api_me(f"{scheme} {first_party_access_token()}")
    oauth = api_me(f"{scheme} {oauth_access_token()}")

    assert first_party.status_code == 200, first_party.content
    assert oauth.status_code == 200, oauth.content


@pytest.mark.parametrize("scheme", ["bearer", "BEARER"])
def test_userinfo_reads_the_bearer_scheme_in_any_case(scheme: str) -> None:
    response = userinfo(f"{scheme} {oauth_access_token()}")

    assert response.status_code == 200, response.content
    assert set(response.json()) >= {"sub"}
