"""What a client may ask for (docs/decisions/0015): a client created without choosing scopes has the
default a registered client gets, and scope values the server does not know are ignored (OpenID
Connect Core §3.1.2.1) while known ones the client may not have stay `invalid_scope`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.test import Client
from oauth2_provider.models import get_device_grant_model

from oauth_provider.models import Application, Consent
from oauth_provider.services import application_create
from oauth_provider.tests.browser import id_token_claims
from oauth_provider.tests.token_flows import (
    REDIRECT_URI,
    RegisteredClient,
    authorize,
    pkce,
    redeem,
    redirect_query,
    registered_client,
    signed_in,
    token_request,
)

pytestmark = pytest.mark.django_db

# What OpenID Connect libraries ask for when told nothing (Authlib, oidc-client-ts, AppAuth, …).
LIBRARY_DEFAULT = "openid profile email"
REGISTRATION_DEFAULT = "openid profile email offline_access users:read files:read"


def code_flow(client: RegisteredClient, scope: str) -> tuple[dict[str, str], Any]:
    """Authorize (signed in, no consent page) with `scope`: the redirect's query and the redemption."""
    browser, _ = signed_in()
    challenge = pkce()
    query = redirect_query(authorize(browser, client, challenge=challenge, scope=scope))
    if "code" not in query:
        return query, None
    return query, redeem(client, query["code"], challenge)


def without_scopes(**fields: Any) -> RegisteredClient:
    """A trusted client saved with `allowed_scopes` empty, as the admin form left blank saves it."""
    issued = application_create(
        name="Made in a hurry",
        owner=None,
        client_type=Application.CLIENT_CONFIDENTIAL,
        redirect_uris=REDIRECT_URI,
        allowed_scopes="",
        skip_authorization=True,
        **fields,
    )
    return RegisteredClient(issued.application, issued.client_secret)


# --- a client without scopes of its own --------------------------------------------------------------


def test_a_client_without_scopes_gets_what_every_library_asks_for_by_default() -> None:
    client = without_scopes()

    query, redeemed = code_flow(client, LIBRARY_DEFAULT)

    assert "error" not in query, query
    assert redeemed.status_code == 200, redeemed.content
    assert redeemed.json()["scope"] == LIBRARY_DEFAULT
    assert "id_token" in redeemed.json()


def test_a_client_without_scopes_may_have_the_registration_default_and_no_more(settings: Any) -> None:
    settings.OAUTH_REGISTRATION_SCOPES = ["openid", "email"]
    client = without_scopes()

    allowed, redeemed = code_flow(client, "openid email")
    refused, _ = code_flow(client, "openid profile")

    assert redeemed.json()["scope"] == "openid email"
    assert "error" not in allowed
    assert refused["error"] == "invalid_scope"


def test_a_client_made_with_the_toolkits_createapplication_command_signs_users_in() -> None:
    """Without `--algorithm` too: its ID tokens are signed with RS256, the published key."""
    call_command(
        "createapplication",
        "confidential",
        "authorization-code",
        "--name=Made on the command line",
        f"--redirect-uris={REDIRECT_URI}",
        "--client-secret=a-secret-of-the-command-line-that-is-long-enough",
        "--skip-authorization",
        stdout=None,
    )
    application = Application.objects.get(name="Made on the command line")
    assert application.allowed_scopes == ""
    client = RegisteredClient(application, "a-secret-of-the-command-line-that-is-long-enough")

    query, redeemed = code_flow(client, LIBRARY_DEFAULT)

    assert "error" not in query, query
    assert redeemed.status_code == 200, redeemed.content
    assert redeemed.json()["scope"] == LIBRARY_DEFAULT
    assert id_token_claims(redeemed.json()["id_token"], application)["email"]
    application.refresh_from_db()
    assert application.algorithm == Application.NO_ALGORITHM  # read as RS256, never written


# --- unknown scope values are ignored, known ones not allowed are refused -----------------------------


def test_unknown_scope_values_are_ignored_and_the_token_shows_what_was_granted() -> None:
    client = registered_client(allowed_scopes="openid profile users:read")

    query, redeemed = code_flow(client, "openid profile https://example.com/unknown phone")

    assert "error" not in query, query
    assert redeemed.status_code == 200, redeemed.content
    assert redeemed.json()["scope"] == "openid profile"


def test_a_request_of_unknown_scopes_only_gets_the_default_scope() -> None:
    client = registered_client(allowed_scopes="openid profile")

    _, redeemed = code_flow(client, "phone address")

    assert redeemed.json()["scope"] == "openid"


def test_a_known_scope_the_client_may_not_have_is_still_invalid_scope() -> None:
    client = registered_client(allowed_scopes="openid profile")

    query, redeemed = code_flow(client, "openid users:write unknown")

    assert query["error"] == "invalid_scope"
    assert redeemed is None


def test_the_consent_page_lists_and_remembers_only_known_scopes() -> None:
    application = application_create(
        name="Third party",
        owner=None,
        client_type=Application.CLIENT_PUBLIC,
        redirect_uris=REDIRECT_URI,
        allowed_scopes="openid email",
    ).application
    browser, user = signed_in()
    challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email unknown",
        "code_challenge": challenge.challenge,
        "code_challenge_method": "S256",
    }

    page = browser.get(f"/o/authorize/?{urlencode(query)}")

    assert page.status_code == 200
    assert [name for name, _ in page.context["scopes"]] == ["openid", "email"]
    form = {field.name: field.value() or "" for field in page.context["form"].hidden_fields()}
    browser.post("/o/authorize/", {**form, "allow": "true"})
    assert Consent.objects.get(user=user).scope_list == ["email", "openid"]


def test_client_credentials_ignore_unknown_scopes() -> None:
    client = registered_client(
        grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read files:read"
    )

    response = token_request(
        {"grant_type": "client_credentials", "scope": "users:read unknown", **client.credentials()}
    )

    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "users:read"


def test_a_device_asking_for_unknown_scopes_gets_the_known_ones() -> None:
    client = registered_client(
        grant_type=Application.GRANT_DEVICE_CODE, confidential=False, allowed_scopes="openid users:read"
    )

    response = Client().post(
        "/o/device-authorization/",
        urlencode({"client_id": client.client_id, "scope": "openid users:read unknown"}),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "openid users:read"
    assert get_device_grant_model().objects.get().scope == "openid users:read"
