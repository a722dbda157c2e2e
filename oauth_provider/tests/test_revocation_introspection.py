"""Revocation (RFC 7009) and introspection (RFC 7662) (docs/decisions/0015)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from accounts.models import User
from accounts.services.moderation import user_deactivate
from accounts.tests.factories import UserFactory
from oauth_provider.models import Application
from oauth_provider.services import application_create
from oauth_provider.tests.token_flows import (
    INTROSPECT_URL,
    REVOKE_URL,
    SCOPES,
    RegisteredClient,
    access_token_row,
    authorize,
    basic_auth,
    events,
    oauth_error,
    pkce,
    redeem,
    redirect_query,
    refresh,
    refresh_token_row,
    registered_client,
    signed_in,
    tokens,
    userinfo,
)

pytestmark = pytest.mark.django_db

ISSUER = "http://127.0.0.1:8000"
FILES_API = "https://files.example.com/"


def revoke(client: RegisteredClient, token: str, **extra: str) -> Any:
    return Client().post(REVOKE_URL, {"token": token, **client.credentials(), **extra})


def introspect(client: RegisteredClient, token: str, **extra: str) -> Any:
    return Client().post(
        INTROSPECT_URL, {"token": token, **extra}, headers={"Authorization": basic_auth(client)}
    )


def resource_server() -> RegisteredClient:
    """A confidential client staff gave the `introspection` permission."""
    issued = application_create(
        name="Files API",
        owner=None,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        allowed_scopes="introspection",
    )
    return RegisteredClient(issued.application, issued.client_secret)


# --- revocation -------------------------------------------------------------------------------------


def test_revoking_a_refresh_token_revokes_its_access_token_too() -> None:
    client = registered_client()
    user = UserFactory.create()
    issued = tokens(client, user=user)

    response = revoke(client, issued["refresh_token"], token_type_hint="refresh_token")

    assert (response.status_code, response.content) == (200, b"")
    assert refresh_token_row(issued["refresh_token"]).revoked is not None
    assert access_token_row(issued["access_token"]) is None
    assert userinfo(issued["access_token"]).status_code == 401
    assert refresh(client, issued["refresh_token"]).json() == oauth_error("invalid_grant")
    [revoked] = events("oauth.token.revoked")
    assert (revoked.actor_type, revoked.actor_id, revoked.target_id) == (
        "client",
        client.client_id,
        str(user.pk),
    )
    assert revoked.metadata == {
        "kind": "refresh",
        "record_id": refresh_token_row(issued["refresh_token"]).pk,
        "client_id": client.client_id,
        "via": "rfc7009",
    }


def test_revoking_an_access_token_leaves_its_refresh_token_working() -> None:
    client = registered_client()
    issued = tokens(client)
    record_id = access_token_row(issued["access_token"]).pk

    response = revoke(client, issued["access_token"])

    assert response.status_code == 200
    assert userinfo(issued["access_token"]).status_code == 401
    assert introspect(client, issued["access_token"]).json() == {"active": False}
    renewed = refresh(client, issued["refresh_token"])
    assert renewed.status_code == 200, renewed.content
    assert userinfo(renewed.json()["access_token"]).status_code == 200
    [revoked] = events("oauth.token.revoked")
    assert revoked.metadata == {
        "kind": "access",
        "record_id": record_id,
        "client_id": client.client_id,
        "via": "rfc7009",
    }


def test_the_type_hint_is_only_a_hint() -> None:
    client = registered_client()
    issued = tokens(client)

    assert revoke(client, issued["refresh_token"], token_type_hint="access_token").status_code == 200

    assert refresh_token_row(issued["refresh_token"]).revoked is not None


def test_revoking_an_unknown_token_answers_200_and_changes_nothing() -> None:
    client = registered_client()
    issued = tokens(client)

    response = revoke(client, "no-such-token")

    assert (response.status_code, response.content) == (200, b"")
    assert userinfo(issued["access_token"]).status_code == 200
    assert events("oauth.token.revoked") == []


def test_a_client_cannot_revoke_another_clients_token() -> None:
    owner, other = registered_client(), registered_client(name="Other")
    issued = tokens(owner)

    response = revoke(other, issued["refresh_token"])

    assert response.status_code == 200  # RFC 7009 §2.2: nothing to tell
    assert refresh_token_row(issued["refresh_token"]).revoked is None
    assert userinfo(issued["access_token"]).status_code == 200
    assert events("oauth.token.revoked") == []


def test_revoking_twice_is_recorded_once() -> None:
    client = registered_client()
    issued = tokens(client)

    revoke(client, issued["refresh_token"])
    revoke(client, issued["refresh_token"])

    assert len(events("oauth.token.revoked")) == 1


def test_a_client_with_a_wrong_secret_is_refused_and_nothing_is_revoked() -> None:
    client = registered_client()
    issued = tokens(client)

    response = Client().post(
        REVOKE_URL,
        {"token": issued["refresh_token"], "client_id": client.client_id, "client_secret": "wrong"},
    )

    assert response.status_code == 401
    assert response.json() == oauth_error("invalid_client")
    assert refresh_token_row(issued["refresh_token"]).revoked is None


def test_a_public_client_revokes_its_own_token_with_its_client_id() -> None:
    client = registered_client(confidential=False)
    issued = tokens(client)

    assert revoke(client, issued["refresh_token"]).status_code == 200

    assert refresh_token_row(issued["refresh_token"]).revoked is not None


# --- introspection -----------------------------------------------------------------------------------


def test_a_resource_server_introspects_any_clients_access_token() -> None:
    client = registered_client()
    user = UserFactory.create()
    issued = tokens(client, user=user)
    row = access_token_row(issued["access_token"])

    response = introspect(resource_server(), issued["access_token"])

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "active": True,
        "scope": SCOPES,
        "token_type": "Bearer",
        "client_id": client.client_id,
        "exp": int(row.expires.timestamp()),
        "iat": int(row.created.timestamp()),
        "iss": ISSUER,
        "sub": str(user.pk),
        "username": user.username,
        "aud": [ISSUER],  # the API, the resource a token without a `resource` is for
    }


def test_introspection_names_the_audience_of_every_active_token() -> None:
    """Issue 12 item 12: `aud` (RFC 7662 §2.2) is the RFC 8707 resource the token was bound to,
    else our API (RFC 9728 `resource`, the site root), for access and refresh tokens alike."""
    client = registered_client()
    unbound = tokens(client)
    browser, _ = signed_in()
    challenge = pkce()
    code = redirect_query(authorize(browser, client, challenge=challenge, resource=FILES_API))["code"]
    bound = redeem(client, code, challenge).json()
    server = resource_server()

    assert introspect(server, unbound["access_token"]).json()["aud"] == [ISSUER]
    assert introspect(server, unbound["refresh_token"]).json()["aud"] == [ISSUER]
    assert introspect(server, bound["access_token"]).json()["aud"] == [FILES_API]
    assert introspect(server, bound["refresh_token"]).json()["aud"] == [FILES_API]
    assert Client().get("/.well-known/oauth-protected-resource").json()["resource"] == ISSUER


def test_a_client_introspects_its_own_tokens_refresh_tokens_included() -> None:
    client = registered_client()
    issued = tokens(client)

    access = introspect(client, issued["access_token"]).json()
    refreshed = introspect(client, issued["refresh_token"], token_type_hint="refresh_token").json()

    assert (access["active"], access["token_type"]) == (True, "Bearer")
    assert (refreshed["active"], refreshed["token_type"], refreshed["scope"]) == (
        True,
        "refresh_token",
        SCOPES,
    )
    family_end = refresh_token_row(issued["refresh_token"]).created + timedelta(days=90)
    idle_end = access_token_row(issued["access_token"]).expires + timedelta(days=30)
    assert refreshed["exp"] == int(min(family_end, idle_end).timestamp())


def test_another_clients_token_is_inactive_to_a_client_without_the_permission() -> None:
    owner, other = registered_client(), registered_client(name="Other")
    issued = tokens(owner)

    assert introspect(other, issued["access_token"]).json() == {"active": False}
    assert introspect(other, issued["refresh_token"]).json() == {"active": False}
    assert introspect(owner, issued["access_token"]).json()["active"] is True


@pytest.mark.parametrize("change", ["expired", "revoked", "rotated", "deactivated", "user_deactivated"])
def test_dead_tokens_are_inactive(change: str) -> None:
    client = registered_client()
    user = UserFactory.create()
    issued = tokens(client, user=user)
    if change == "expired":
        get_access_token_model().objects.update(expires=timezone.now() - timedelta(seconds=1))
    elif change == "revoked":
        revoke(client, issued["refresh_token"])
    elif change == "rotated":
        refresh(client, issued["refresh_token"])
    elif change == "deactivated":
        User.objects.filter(pk=user.pk).update(is_active=False)  # behind the services' back
    else:
        user_deactivate(user=user, reason="spam")

    server = resource_server()

    assert introspect(server, issued["access_token"]).json() == {"active": False}
    # An access token's expiry is what its refresh token is for.
    refresh_state = introspect(server, issued["refresh_token"]).json()["active"]
    assert refresh_state is (change == "expired")


def test_an_unknown_token_is_inactive() -> None:
    assert introspect(resource_server(), "no-such-token").json() == {"active": False}


def test_introspection_needs_the_clients_own_credentials() -> None:
    client = registered_client()
    issued = tokens(client)

    nobody = Client().post(INTROSPECT_URL, {"token": issued["access_token"]})
    wrong = Client().post(
        INTROSPECT_URL,
        {"token": issued["access_token"], "client_id": client.client_id, "client_secret": "wrong"},
    )
    bearer = Client().post(
        INTROSPECT_URL,
        {"token": issued["access_token"]},
        headers={"Authorization": f"Bearer {issued['access_token']}"},
    )
    public = Client().post(
        INTROSPECT_URL,
        {"token": issued["access_token"], "client_id": registered_client(confidential=False).client_id},
    )

    description = "Authenticate with the client's own credentials (HTTP Basic or client_secret_post)."
    for response in (nobody, wrong, bearer, public):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Basic realm="oauth"'  # RFC 6749 §5.2
        assert response.json() == oauth_error("invalid_client", description)


def test_introspection_accepts_credentials_in_the_body_too() -> None:
    client = registered_client()
    issued = tokens(client)

    response = Client().post(INTROSPECT_URL, {"token": issued["access_token"], **client.credentials()})

    assert response.json()["active"] is True


def test_introspection_without_a_token_is_a_bad_request() -> None:
    response = Client().post(INTROSPECT_URL, headers={"Authorization": basic_auth(resource_server())})

    assert response.status_code == 400
    assert response.json() == oauth_error("invalid_request", "The token parameter is missing.")


def test_introspection_refuses_get_which_would_put_the_token_in_logs() -> None:
    client = registered_client()
    issued = tokens(client)

    response = Client().get(
        INTROSPECT_URL, {"token": issued["access_token"]}, headers={"Authorization": basic_auth(client)}
    )

    assert response.status_code == 405
