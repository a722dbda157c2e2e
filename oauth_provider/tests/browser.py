"""A browser's and a client's parts of the authorization code flow, over HTTP with Django's test client.

Shared by the tests of the authorization endpoint, consent, claims and the authorized applications.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from allauth.account.models import EmailAddress
from django.test import Client
from jwcrypto import jwk, jwt

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from oauth_provider.models import Application
from oauth_provider.services import application_create

AUTHORIZE_URL = "/o/authorize/"
TOKEN_URL = "/o/token/"
USERINFO_URL = "/o/userinfo/"
JWKS_URL = "/o/.well-known/jwks.json"
LOGIN_URL = "/accounts/login/"
SECOND_FACTOR_URL = "/accounts/2fa/authenticate/"
REDIRECT_URI = "https://app.example.com/callback"
ALL_SCOPES = "openid profile email offline_access"


@dataclass
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    """RFC 7636 §4.1-4.2: a verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier=verifier, challenge=base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def member(**fields: Any) -> User:
    """A user with a verified primary address, as sign-up and verification leave them."""
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
    return user


def oauth_client(
    *,
    name: str = "Photo printer",
    trusted: bool = False,
    redirect_uris: str = REDIRECT_URI,
    allowed_scopes: str = ALL_SCOPES,
    confidential: bool = False,
) -> Application:
    """A third-party (or, `trusted`, first-party) client of the code flow."""
    return application_create(
        name=name,
        owner=None,
        client_type=Application.CLIENT_CONFIDENTIAL if confidential else Application.CLIENT_PUBLIC,
        redirect_uris=redirect_uris,
        allowed_scopes=allowed_scopes,
        skip_authorization=trusted,
    ).application


def authorize_path(application: Application, challenge: Pkce | None = None, **params: str) -> str:
    """An authorization request of `application`; keyword arguments add or override parameters
    (an empty string drops one)."""
    query: dict[str, str] = {
        "response_type": "code",
        "client_id": application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "state-123",
    }
    if challenge is not None:
        query.update(code_challenge=challenge.challenge, code_challenge_method="S256")
    query.update(params)
    return f"{AUTHORIZE_URL}?{urlencode({key: value for key, value in query.items() if value != ''})}"


def query_of(location: str) -> dict[str, str]:
    """The query parameters of a redirect, one value each."""
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def consent_form(response: Any) -> dict[str, str]:
    """The hidden fields of the consent page's form, as the browser would post them."""
    form = response.context["form"]
    return {field.name: field.value() or "" for field in form.hidden_fields()}


def allow(client: Client, page: Any) -> Any:
    return client.post(AUTHORIZE_URL, {**consent_form(page), "allow": "true"})


def deny(client: Client, page: Any) -> Any:
    return client.post(AUTHORIZE_URL, consent_form(page))


def code_from(response: Any) -> str:
    assert response.status_code == 302, getattr(response, "content", b"")[:2000]
    location = response["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return query_of(location)["code"]


def redeem(client: Client, application: Application, code: str, challenge: Pkce) -> dict[str, Any]:
    """The client's token request (RFC 6749 §4.1.3, RFC 7636 §4.5), answered 200."""
    response = client.post(
        TOKEN_URL,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": application.client_id,
            "code_verifier": challenge.verifier,
        },
    )
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def tokens_for(client: Client, application: Application, **params: str) -> dict[str, Any]:
    """Authorize (the user is signed in and needs no consent page) and redeem the code."""
    challenge = pkce()
    code = code_from(client.get(authorize_path(application, challenge, **params)))
    return redeem(Client(), application, code, challenge)


def id_token_claims(id_token: str, application: Application) -> dict[str, Any]:
    """The claims of an ID token whose signature checks against the published JWKS, for `application`."""
    keys = jwk.JWKSet.from_json(Client().get(JWKS_URL).content)
    token = jwt.JWT(jwt=id_token, key=keys, expected_type="JWS")
    claims: dict[str, Any] = json.loads(token.claims)
    assert claims["aud"] == application.client_id
    return claims


def userinfo(access_token: str) -> Any:
    return Client().get(USERINFO_URL, headers={"Authorization": f"Bearer {access_token}"})


def password_step(client: Client, user: User, *, path: str) -> Any:
    """allauth's sign-in form, posted where the browser was sent (`/accounts/login/?next=...`)."""
    return client.post(path, {"login": user.username, "password": DEFAULT_PASSWORD})
