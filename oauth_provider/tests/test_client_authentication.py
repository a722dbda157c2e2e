"""Client authentication at the token, revocation, introspection and device authorization
endpoints (RFC 6749 §2.3 and §5.2): the challenge names the scheme clients authenticate with, and
a request that names two clients, or no grant type, is a client error, never a server error."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from oauth2_provider.models import get_access_token_model, get_device_grant_model

from oauth_provider.models import Application
from oauth_provider.tests.token_flows import (
    INTROSPECT_URL,
    REVOKE_URL,
    TOKEN_URL,
    RegisteredClient,
    basic_auth,
    oauth_error,
    refresh_token_row,
    registered_client,
    token_request,
    tokens,
)

pytestmark = pytest.mark.django_db

DEVICE_URL = "/o/device-authorization/"
CLIENT_CHALLENGE = 'Basic realm="oauth"'
MISMATCH = "The client_id in the body is not the client the Authorization header authenticates."


def machine(name: str = "Nightly export") -> RegisteredClient:
    return registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, name=name)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def post(path: str, data: dict[str, str], **headers: str) -> Any:
    """A form-encoded POST, as clients send (the device authorization endpoint takes nothing else)."""
    return Client().post(
        path, urlencode(data), content_type="application/x-www-form-urlencoded", headers=headers
    )


# --- RFC 6749 §5.2: the challenge of a failed client authentication ----------------------------------


@pytest.mark.parametrize("path", [TOKEN_URL, REVOKE_URL, INTROSPECT_URL, DEVICE_URL])
def test_a_wrong_basic_secret_is_challenged_with_basic(path: str) -> None:
    client = machine()

    response = post(
        path,
        # The device authorization endpoint wants the client_id in the body even then (oauthlib).
        {"grant_type": "client_credentials", "token": "some-token", "client_id": client.client_id},
        Authorization=basic(client.client_id, "wrong"),
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == CLIENT_CHALLENGE
    assert response.json()["error"] == "invalid_client"
    assert get_access_token_model().objects.count() == 0


@pytest.mark.parametrize("path", [TOKEN_URL, REVOKE_URL])
def test_a_wrong_secret_in_the_body_is_challenged_with_basic_too(path: str) -> None:
    """§5.2: the 401 says which HTTP scheme the server accepts; Bearer is no client authentication."""
    client = machine()

    response = post(
        path,
        {
            "grant_type": "client_credentials",
            "token": "some-token",
            "client_id": client.client_id,
            "client_secret": "wrong",
        },
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == CLIENT_CHALLENGE
    assert response.json() == oauth_error("invalid_client")


def test_the_basic_scheme_is_case_insensitive() -> None:
    """RFC 9110 §11.1: `basic` is `Basic`."""
    client = machine()

    response = token_request(
        {"grant_type": "client_credentials"}, Authorization=basic_auth(client).replace("Basic", "basic")
    )

    assert response.status_code == 200, response.content
    assert response.json()["token_type"] == "Bearer"


# --- requests that name two clients, or no grant ------------------------------------------------------


@pytest.mark.parametrize("path", [TOKEN_URL, REVOKE_URL, INTROSPECT_URL, DEVICE_URL])
def test_a_body_client_id_that_disagrees_with_the_basic_credentials_is_invalid_request(path: str) -> None:
    client, other = machine(), machine("Other")

    with_id = post(
        path,
        {"grant_type": "client_credentials", "token": "t", "client_id": other.client_id},
        Authorization=basic_auth(client),
    )
    with_both_secrets = post(
        path,
        {"grant_type": "client_credentials", "token": "t", **other.credentials()},
        Authorization=basic_auth(client),
    )

    for response in (with_id, with_both_secrets):
        assert response.status_code == 400
        assert response.json() == oauth_error("invalid_request", MISMATCH)
    assert get_access_token_model().objects.count() == 0
    assert not get_device_grant_model().objects.exists()


def test_a_body_client_id_equal_to_the_basic_one_is_accepted() -> None:
    client = machine()

    response = token_request(
        {"grant_type": "client_credentials", "client_id": client.client_id}, Authorization=basic_auth(client)
    )

    assert response.status_code == 200, response.content


def test_a_token_request_without_grant_type_is_invalid_request() -> None:
    client = machine()

    basic_only = token_request({}, Authorization=basic_auth(client))
    empty = token_request({"grant_type": "", **client.credentials()})

    for response in (basic_only, empty):
        assert response.status_code == 400
        assert response.json() == oauth_error("invalid_request", "The grant_type parameter is missing.")
    assert get_access_token_model().objects.count() == 0


def test_revoking_with_basic_credentials_and_a_disagreeing_client_id_revokes_nothing() -> None:
    client = registered_client()
    issued = tokens(client)

    response = post(
        REVOKE_URL,
        {"token": issued["refresh_token"], "client_id": machine().client_id},
        Authorization=basic_auth(client),
    )

    assert response.status_code == 400
    assert refresh_token_row(issued["refresh_token"]).revoked is None
