"""RFC 9700 rules that are not a grant's or an endpoint's own: the toolkit's compliance gates,
bearer tokens kept out of URLs, and the toolkit pages that must not be routed.

The grants' rules are in test_grants (PKCE, codes, implicit and password refused), test_refresh
(rotation and reuse), test_redirect_uris and test_authorize (exact redirect URIs, error pages,
`iss`); `manage.py check --deploy` with every gate on is config/tests/test_settings.py.
"""

from __future__ import annotations

import pytest
from django.test import Client
from oauth2_provider.settings import DEFAULTS, oauth2_settings

from accounts.tests.factories import UserFactory
from oauth_provider.tests.token_flows import bearer, registered_client, tokens

pytestmark = pytest.mark.django_db

GATES = sorted(name for name in DEFAULTS if name.startswith("COMPLIANT_BCP_RFC9700_"))


def test_every_rfc_9700_gate_of_the_toolkit_is_on() -> None:
    assert len(GATES) >= 10  # the toolkit's 3.4.1 set; a new gate shows up here
    assert {name: getattr(oauth2_settings, name) for name in GATES} == dict.fromkeys(GATES, True)


def test_an_access_token_in_the_query_string_is_refused() -> None:
    """RFC 9700 §4.3.2, RFC 6750 §5.3: URLs end up in logs and Referer headers."""
    access_token = tokens(registered_client())["access_token"]

    from_query = Client().get("/o/userinfo/", {"access_token": access_token})
    api_from_query = Client().get("/api/v1/users/me/", {"access_token": access_token})

    assert from_query.status_code == 400
    assert from_query.json()["error"] == "invalid_request"
    assert from_query["WWW-Authenticate"] == 'Bearer error="invalid_request"'
    assert api_from_query.status_code == 401
    assert api_from_query.json()["errors"][0]["code"] == "not_authenticated"
    assert (
        Client().get("/o/userinfo/", headers={"Authorization": f"Bearer {access_token}"}).status_code == 200
    )
    assert bearer(access_token).get("/api/v1/users/me/").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/o/applications/",
        "/o/applications/register/",
        "/o/authorized_tokens/",
        "/o/.well-known/openid-configuration",
        "/o/.well-known/oauth-authorization-server",
        "/o/.well-known/oauth-protected-resource",
    ],
)
def test_the_toolkits_own_management_pages_and_document_copies_are_not_routed(path: str) -> None:
    """Its application pages would let any signed-in user register a client past our registration
    policy; the discovery documents live at the issuer, the site root, only."""
    browser = Client()
    browser.force_login(UserFactory.create())

    assert browser.get(path).status_code == 404
