"""Discovery (OIDC Discovery, RFC 8414), protected-resource metadata (RFC 9728) and RFC 9207's `iss`."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from oauth_provider.tests.browser import pkce
from oauth_provider.tests.test_keys import (
    REDIRECT_URI,
    authorization_request,
    authorize,
    relying_party,
)
from oauth_provider.validators import OAuth2Validator

pytestmark = pytest.mark.django_db

SITE = "http://127.0.0.1:8000"  # SITE_URL in the tests: the issuer
METADATA_URLS = ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]


def expected_metadata() -> dict[str, Any]:
    return {
        "issuer": SITE,
        "authorization_endpoint": f"{SITE}/o/authorize/",
        "token_endpoint": f"{SITE}/o/token/",
        "userinfo_endpoint": f"{SITE}/o/userinfo/",
        "jwks_uri": f"{SITE}/o/.well-known/jwks.json",
        "scopes_supported": [
            "email",
            "files:read",
            "files:write",
            "offline_access",
            "openid",
            "organizations:read",
            "organizations:write",
            "profile",
            "users:read",
            "users:write",
        ],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "HS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        # The claims are the validator's (oauth_provider/claims.py); here they are only sorted.
        "claims_supported": sorted(set(OAuth2Validator().get_discovery_claims(None))),
        "prompt_values_supported": ["none", "login", "consent", "select_account", "create"],
        "acr_values_supported": ["1", "2"],
        "service_documentation": f"{SITE}/api/v1/docs/",
        "client_id_metadata_document_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "end_session_endpoint": f"{SITE}/o/logout/",
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "revocation_endpoint": f"{SITE}/o/revoke_token/",
        "introspection_endpoint": f"{SITE}/o/introspect/",
        "registration_endpoint": f"{SITE}/o/register/",
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "device_authorization_endpoint": f"{SITE}/o/device-authorization/",
        "response_modes_supported": ["query"],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


@pytest.fixture
def registration_enabled(settings: Any) -> None:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "DCR_ENABLED": True}


@pytest.mark.usefixtures("registration_enabled")
@pytest.mark.parametrize("url", METADATA_URLS)
def test_the_metadata_lists_every_endpoint_grant_and_method(client: Client, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "public, max-age=3600"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == expected_metadata()
    assert "sub" in response.json()["claims_supported"]


@pytest.mark.usefixtures("registration_enabled")
def test_both_documents_are_one_and_the_issuer_is_the_site_root_exactly(
    client: Client, settings: Any
) -> None:
    openid = client.get("/.well-known/openid-configuration").json()
    oauth = client.get("/.well-known/oauth-authorization-server").json()

    assert openid == oauth
    # OIDC Discovery §4.3 and RFC 8414 §3.3: the issuer is the URL the document was found under.
    assert openid["issuer"] == settings.SITE_URL == SITE
    assert not openid["issuer"].endswith("/")


def test_without_registration_the_metadata_does_not_advertise_it(client: Client, settings: Any) -> None:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "DCR_ENABLED": False}

    document = client.get("/.well-known/openid-configuration").json()

    assert document == {
        key: value for key, value in expected_metadata().items() if key != "registration_endpoint"
    }


def test_the_protected_resource_metadata_describes_our_api(client: Client) -> None:
    response = client.get("/.well-known/oauth-protected-resource")

    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=3600"
    assert response.json() == {
        # RFC 9728 §3.3: the resource whose metadata is at the root well-known URL is the origin.
        "resource": SITE,
        "authorization_servers": [SITE],
        "scopes_supported": [
            "files:read",
            "files:write",
            "organizations:read",
            "organizations:write",
            "users:read",
            "users:write",
        ],
        "bearer_methods_supported": ["header"],
        "resource_name": "Identity service API",
        "resource_documentation": f"{SITE}/api/v1/docs/",
    }


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("", id="no-token"),
        pytest.param("Bearer not-a-token", id="unknown-token"),
        pytest.param("Bearer a.b.c", id="bad-jwt"),
    ],
)
def test_api_401s_point_at_the_protected_resource_metadata(authorization: str) -> None:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.get("/api/v1/users/me/")

    assert response.status_code == 401
    error = ' error="invalid_token",' if authorization else ""  # RFC 6750 §3.1: only for a token sent
    challenge = f'Bearer realm="api",{error} resource_metadata="{SITE}/.well-known/oauth-protected-resource"'
    assert response["WWW-Authenticate"] == challenge
    # A client that follows the pointer learns where to get a token (RFC 9728 §5.1).
    metadata = client.get("/.well-known/oauth-protected-resource").json()
    assert metadata["authorization_servers"] == [SITE]
    assert client.get("/.well-known/oauth-authorization-server").json()["issuer"] == SITE


def test_the_authorization_response_carries_the_issuer(user: User) -> None:
    """RFC 9207 §2: `iss` in the redirect, equal to the metadata's issuer."""
    browser = Client()
    browser.force_login(user)
    issued = relying_party()
    query = authorize(browser, authorization_request(issued, challenge=pkce().challenge))

    assert query["iss"] == [SITE]
    assert query["state"] == ["state-1"]
    assert set(query) == {"code", "state", "iss"}


def test_an_error_response_carries_the_issuer_too(user: User) -> None:
    """RFC 9207 §2: error responses to the redirect URI carry `iss` as well."""
    browser = Client()
    browser.force_login(user)
    issued = relying_party()
    response = browser.get(
        "/o/authorize/",
        authorization_request(issued, challenge=pkce().challenge, scope="openid organizations:write"),
    )

    assert response.status_code == 302
    assert response["Location"].startswith(f"{REDIRECT_URI}?")
    assert "error=invalid_scope" in response["Location"]
    assert response["Location"].endswith("&iss=http%3A%2F%2F127.0.0.1%3A8000")
