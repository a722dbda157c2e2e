"""The grants the token endpoint offers, and the ones it refuses (docs/decisions/0015).

Authorization code with PKCE (S256 only; required for public clients and for confidential ones
that ask for it), single-use codes whose reuse revokes what they bought, client credentials
limited to the client's scopes; no implicit, hybrid or password grant.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from accounts.models import User
from accounts.tests.factories import UserFactory
from oauth_provider.models import Application, TokenFamily
from oauth_provider.services import tokens as token_services
from oauth_provider.tests.token_flows import (
    REDIRECT_URI,
    SCOPES,
    access_token_row,
    authorization_code,
    authorize,
    checksum,
    events,
    oauth_error,
    pkce,
    redeem,
    redirect_query,
    refresh,
    refresh_token_row,
    registered_client,
    signed_in,
    token_request,
    tokens,
    userinfo,
)

pytestmark = pytest.mark.django_db

ISSUER = "http://127.0.0.1:8000"


def grants() -> int:
    return get_grant_model().objects.count()


def refused_to_client(response: Any, error: str, description: str | None = None) -> None:
    """RFC 6749 §4.1.2.1: an error sent back to the client's redirect URI, with `state` and `iss`."""
    query = redirect_query(response)
    expected = {"error": error, "state": "state-123", "iss": ISSUER}
    if description is not None:
        expected["error_description"] = description
    assert query == expected


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- PKCE at the authorization endpoint ------------------------------------------------------------


def test_a_public_client_without_a_code_challenge_is_refused_at_authorize() -> None:
    client = registered_client(confidential=False)
    browser, _ = signed_in()

    response = authorize(browser, client, challenge=None)

    refused_to_client(response, "invalid_request", "Code challenge required.")
    assert grants() == 0


@pytest.mark.parametrize("confidential", [False, True], ids=["public", "confidential"])
def test_a_plain_code_challenge_is_refused_at_authorize(confidential: bool) -> None:
    client = registered_client(confidential=confidential)
    browser, _ = signed_in()
    verifier = pkce().verifier

    response = authorize(
        browser, client, challenge=None, code_challenge=verifier, code_challenge_method="plain"
    )

    refused_to_client(response, "invalid_request", "Transform algorithm not supported.")
    assert grants() == 0


def test_a_code_challenge_without_a_method_counts_as_plain_and_is_refused() -> None:
    client = registered_client(confidential=False)
    browser, _ = signed_in()

    response = authorize(browser, client, challenge=None, code_challenge=pkce().verifier)  # RFC 7636 §4.3

    refused_to_client(response, "invalid_request", "Transform algorithm not supported.")
    assert grants() == 0


def test_a_confidential_client_that_requires_pkce_is_refused_without_a_challenge() -> None:
    client = registered_client(confidential=True, require_pkce=True)
    browser, _ = signed_in()

    response = authorize(browser, client, challenge=None)

    refused_to_client(response, "invalid_request", "Code challenge required.")
    assert grants() == 0


def test_a_confidential_client_that_does_not_require_pkce_may_go_without() -> None:
    client = registered_client(confidential=True, require_pkce=False)
    browser, _ = signed_in()

    code = redirect_query(authorize(browser, client, challenge=None))["code"]
    response = redeem(client, code, challenge=None)

    assert response.status_code == 200, response.content
    assert set(response.json()) == {
        "access_token",
        "refresh_token",
        "id_token",
        "expires_in",
        "token_type",
        "scope",
    }


# --- PKCE at the token endpoint ----------------------------------------------------------------------


def test_the_code_flow_with_s256_issues_tokens_stored_only_as_hashes() -> None:
    client = registered_client(confidential=False)
    user = UserFactory.create()
    code, challenge = authorization_code(client, user=user)
    grant = get_grant_model().objects.get(code=code)
    assert grant.expires - grant.created == pytest.approx(timedelta(seconds=60), abs=timedelta(seconds=1))

    response = redeem(client, code, challenge)

    assert response.status_code == 200, response.content
    body = response.json()
    assert response["Cache-Control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == SCOPES
    access, refresh_row = access_token_row(body["access_token"]), refresh_token_row(body["refresh_token"])
    assert (access.token, access.token_checksum, access.user) == ("", checksum(body["access_token"]), user)
    assert (refresh_row.token, refresh_row.access_token) == ("", access)
    assert access.expires - access.created == pytest.approx(timedelta(seconds=600), abs=timedelta(seconds=1))
    id_token = jwt_claims(body["id_token"])
    assert id_token["exp"] - id_token["iat"] == pytest.approx(300, abs=1)
    assert not get_grant_model().objects.filter(code=code).exists()  # single use
    assert userinfo(body["access_token"]).status_code == 200


def test_a_single_page_app_redeems_its_code_from_its_own_origin_only() -> None:
    """A browser-based public client calls the token endpoint cross-origin: the answer carries
    `Access-Control-Allow-Origin` for the origins registered on the client, and no other."""
    client = registered_client(confidential=False)
    client.application.allowed_origins = "https://app.example.com"
    client.application.save(update_fields=["allowed_origins"])
    allowed_code, allowed_challenge = authorization_code(client)
    other_code, other_challenge = authorization_code(client)

    def redeem_from(origin: str, code: str, challenge: Any) -> Any:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": challenge.verifier,
            **client.credentials(),
        }
        return token_request(data, Origin=origin)

    allowed = redeem_from("https://app.example.com", allowed_code, allowed_challenge)
    other = redeem_from("https://evil.example", other_code, other_challenge)

    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in other  # the browser withholds the answer from it


def test_a_token_request_without_the_code_verifier_is_refused_and_the_code_kept() -> None:
    client = registered_client(confidential=False)
    code, challenge = authorization_code(client)

    response = redeem(client, code, challenge=None)

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_request", "Code verifier required.")
    assert get_access_token_model().objects.count() == 0
    assert redeem(client, code, challenge).status_code == 200  # the rightful client still can


def test_a_wrong_code_verifier_is_refused() -> None:
    client = registered_client(confidential=False)
    code, _ = authorization_code(client)

    response = redeem(client, code, pkce())

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_grant")
    assert get_access_token_model().objects.count() == 0
    assert events("oauth.token.issued") == []


def test_a_code_stored_with_a_plain_challenge_is_never_redeemed() -> None:
    """Whatever wrote it: the toolkit refuses to create one, and the token endpoint agrees."""
    client = registered_client(confidential=False)
    user = UserFactory.create()
    verifier = pkce().verifier
    get_grant_model().objects.create(
        application=client.application,
        user=user,
        code="plain-code",
        expires=timezone.now() + timedelta(seconds=60),
        redirect_uri=REDIRECT_URI,
        scope="openid",
        code_challenge=verifier,
        code_challenge_method="plain",
    )

    response = token_request(
        {
            "grant_type": "authorization_code",
            "code": "plain-code",
            "redirect_uri": REDIRECT_URI,
            "client_id": client.client_id,
            "code_verifier": verifier,
        }
    )

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_grant")
    assert get_access_token_model().objects.count() == 0


def test_a_public_client_needs_pkce_at_the_token_endpoint_even_for_a_code_without_a_challenge() -> None:
    client = registered_client(confidential=False)
    get_grant_model().objects.create(
        application=client.application,
        user=UserFactory.create(),
        code="no-challenge",
        expires=timezone.now() + timedelta(seconds=60),
        redirect_uri=REDIRECT_URI,
        scope="openid",
    )

    response = token_request(
        {
            "grant_type": "authorization_code",
            "code": "no-challenge",
            "redirect_uri": REDIRECT_URI,
            "client_id": client.client_id,
        }
    )

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_request", "Code verifier required.")
    assert get_access_token_model().objects.count() == 0


def test_an_expired_code_is_refused() -> None:
    client = registered_client(confidential=False)
    code, challenge = authorization_code(client)
    get_grant_model().objects.filter(code=code).update(expires=timezone.now() - timedelta(seconds=1))

    response = redeem(client, code, challenge)

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_grant")
    assert get_access_token_model().objects.count() == 0


def test_a_deactivated_users_code_is_refused() -> None:
    client = registered_client(confidential=False)
    user = UserFactory.create()
    code, challenge = authorization_code(client, user=user)
    User.objects.filter(pk=user.pk).update(is_active=False)  # behind the services' back

    response = redeem(client, code, challenge)

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_grant")
    assert get_access_token_model().objects.count() == 0


# --- a code is single use --------------------------------------------------------------------------


def test_redeeming_a_code_twice_revokes_every_token_issued_from_it() -> None:
    client = registered_client(confidential=True)
    user = UserFactory.create()
    code, challenge = authorization_code(client, user=user)
    first = redeem(client, code, challenge).json()
    rotated = refresh(client, first["refresh_token"]).json()  # tokens issued since count too
    bystander = tokens(client, user=user)  # another code of the same user and client

    replay = redeem(client, code, challenge)

    assert replay.status_code == 400
    assert replay.json() == oauth_error("invalid_grant")
    assert access_token_row(first["access_token"]) is None
    assert access_token_row(rotated["access_token"]) is None
    assert refresh_token_row(rotated["refresh_token"]).revoked is not None
    assert userinfo(rotated["access_token"]).status_code == 401
    assert refresh(client, rotated["refresh_token"]).json() == oauth_error("invalid_grant")
    assert userinfo(bystander["access_token"]).status_code == 200
    [reused] = events("oauth.authorization_code.reused")
    family = str(refresh_token_row(first["refresh_token"]).token_family)
    assert (reused.outcome, reused.actor_id, reused.target_id) == ("failure", client.client_id, str(user.pk))
    assert reused.metadata == {
        "client_id": client.client_id,
        "family": family,
        "revoked": {"refresh": 1, "access": 1},
    }


def test_a_code_presented_by_another_client_is_refused_and_revokes_nothing() -> None:
    owner, other = registered_client(), registered_client(name="Other")
    code, challenge = authorization_code(owner)
    issued = redeem(owner, code, challenge).json()

    response = redeem(other, code, challenge)

    assert response.json() == oauth_error("invalid_grant")
    assert userinfo(issued["access_token"]).status_code == 200
    assert events("oauth.authorization_code.reused") == []


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_redemptions_of_one_code_give_exactly_one_token(require_postgresql: None) -> None:
    client = registered_client(confidential=False)
    code, challenge = authorization_code(client)
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    issue = token_services.token_issued_record

    def slow_issue(**kwargs: Any) -> Any:
        time.sleep(0.5)  # the winner holds the code's row lock a while: the other must wait for it
        return issue(**kwargs)

    def redeem_now() -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(redeem(client, code, challenge).status_code)
        finally:
            connection.close()

    with mock.patch.object(token_services, "token_issued_record", side_effect=slow_issue):
        threads = [threading.Thread(target=redeem_now) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(statuses) == [200, 400]
    assert len(events("oauth.token.issued")) == 1
    assert TokenFamily.objects.count() == 1
    # The loser presented a code already redeemed: that is reuse, and what it bought is revoked.
    assert len(events("oauth.authorization_code.reused")) == 1
    assert get_access_token_model().objects.count() == 0
    assert get_refresh_token_model().objects.filter(revoked__isnull=True).count() == 0


# --- client credentials ------------------------------------------------------------------------------


def client_credentials(client: Any, **extra: str) -> Any:
    return token_request({"grant_type": "client_credentials", **client.credentials(), **extra})


def test_client_credentials_gives_a_confidential_client_a_token_for_its_own_scopes() -> None:
    client = registered_client(
        grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="openid users:read files:read"
    )

    asked = client_credentials(client, scope="users:read")
    defaulted = client_credentials(client)

    assert asked.status_code == 200, asked.content
    assert set(asked.json()) == {"access_token", "expires_in", "token_type", "scope"}  # no refresh token
    assert asked.json()["scope"] == "users:read"
    assert defaulted.json()["scope"] == "files:read users:read"  # everything allowed but user scopes
    assert access_token_row(asked.json()["access_token"]).user is None
    issued = events("oauth.token.issued")[0]
    assert (issued.actor_type, issued.actor_id, issued.target_type) == ("client", client.client_id, "")
    assert issued.metadata == {
        "client_id": client.client_id,
        "grant_type": "client_credentials",
        "scopes": ["users:read"],
        "refresh": False,
        "family": None,
    }


@pytest.mark.parametrize("scope", ["users:write", "openid", "introspection", "users:write unknown"])
def test_client_credentials_refuses_scopes_the_client_may_not_have(scope: str) -> None:
    client = registered_client(
        grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="openid users:read introspection"
    )

    response = client_credentials(client, scope=scope)

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_scope")
    assert get_access_token_model().objects.count() == 0


def test_client_credentials_is_refused_to_a_public_client() -> None:
    client = registered_client(confidential=False, grant_type=Application.GRANT_CLIENT_CREDENTIALS)

    response = client_credentials(client, scope="users:read")

    assert response.status_code == 401
    assert response.json() == oauth_error("invalid_client")
    assert get_access_token_model().objects.count() == 0


def test_client_credentials_is_refused_with_a_wrong_secret() -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS)

    response = token_request(
        {"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "nope"}
    )

    assert response.status_code == 401
    assert response.json() == oauth_error("invalid_client")


# --- no implicit, hybrid or password grant -------------------------------------------------------------


def test_the_password_grant_is_unsupported_even_for_a_client_registered_for_it() -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    # The model refuses the grant since issue 7; a row written before (or by hand) may claim it.
    Application.objects.filter(pk=client.application.pk).update(
        authorization_grant_type=Application.GRANT_PASSWORD
    )
    user = UserFactory.create()

    with mock.patch("django.contrib.auth.authenticate") as authenticate:
        response = token_request(
            {
                "grant_type": "password",
                "username": user.username,
                "password": "correct-horse-battery-staple",
                **client.credentials(),
            }
        )

    assert response.status_code == 400
    assert response.json() == oauth_error("unsupported_grant_type")
    authenticate.assert_not_called()
    assert get_access_token_model().objects.count() == 0


@pytest.mark.parametrize(
    "response_type", ["token", "id_token", "id_token token", "code token", "code id_token"]
)
@pytest.mark.parametrize(
    "grant_type",
    [Application.GRANT_IMPLICIT, Application.GRANT_OPENID_HYBRID, Application.GRANT_AUTHORIZATION_CODE],
)
def test_implicit_and_hybrid_response_types_are_unsupported_whatever_the_client_claims(
    response_type: str, grant_type: str
) -> None:
    issued = registered_client(confidential=False)
    Application.objects.filter(pk=issued.application.pk).update(authorization_grant_type=grant_type)
    browser, _ = signed_in()

    response = authorize(browser, issued, challenge=pkce(), response_type=response_type, nonce="n-1")

    refused_to_client(response, "unsupported_response_type")
    assert grants() == 0
    assert get_access_token_model().objects.count() == 0


def test_a_refresh_token_grant_on_a_client_credentials_token_is_impossible() -> None:
    """No refresh token is issued with client credentials, so there is nothing to refresh."""
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read")
    access = client_credentials(client).json()["access_token"]

    response = refresh(client, access)

    assert response.json() == oauth_error("invalid_grant")


def test_the_token_endpoint_answers_get_with_405() -> None:
    from django.test import Client

    assert Client().get("/o/token/").status_code == 405


def test_issuing_is_audited_without_any_token_value() -> None:
    client = registered_client()
    user = UserFactory.create()

    body = tokens(client, user=user)

    [issued] = events("oauth.token.issued")
    family = refresh_token_row(body["refresh_token"]).token_family
    assert (issued.actor_type, issued.actor_id, issued.target_id) == (
        "client",
        client.client_id,
        str(user.pk),
    )
    assert issued.metadata == {
        "client_id": client.client_id,
        "grant_type": "authorization_code",
        "scopes": SCOPES.split(),
        "refresh": True,
        "family": str(family),
    }
    stored = json.dumps([issued.metadata, issued.changes])
    assert all(body[name] not in stored for name in ("access_token", "refresh_token", "id_token"))
    token_family = TokenFamily.objects.get(family=family)
    assert (token_family.grant_type, token_family.application) == ("authorization_code", client.application)
    assert token_family.authorization_code_checksum is not None
    assert hashlib.sha256(b"").hexdigest() != token_family.authorization_code_checksum
