"""A client's side of the grants, over HTTP with Django's test client: shared by the tests of
grants, refresh, revocation and introspection, the device flow, client secrets and API scopes."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from config.middleware import OAuthErrorShapeMiddleware
from oauth_provider.models import Application
from oauth_provider.services import application_create
from oauth_provider.tests.browser import Pkce, pkce

AUTHORIZE_URL = "/o/authorize/"
TOKEN_URL = "/o/token/"
REVOKE_URL = "/o/revoke_token/"
INTROSPECT_URL = "/o/introspect/"
USERINFO_URL = "/o/userinfo/"
REDIRECT_URI = "https://app.example.com/callback"
SCOPES = "openid profile offline_access users:read"


@dataclass(frozen=True)
class RegisteredClient:
    application: Application
    secret: str

    @property
    def client_id(self) -> str:
        return self.application.client_id

    def credentials(self) -> dict[str, str]:
        """client_secret_post (RFC 6749 §2.3.1); a public client sends its client_id only."""
        if not self.secret:
            return {"client_id": self.client_id}
        return {"client_id": self.client_id, "client_secret": self.secret}


def registered_client(
    *,
    confidential: bool = True,
    grant_type: str = Application.GRANT_AUTHORIZATION_CODE,
    allowed_scopes: str = SCOPES,
    require_pkce: bool = True,
    name: str = "Photo printer",
) -> RegisteredClient:
    """A client trusted to skip the consent page (the tests here are about tokens, not consent)."""
    issued = application_create(
        name=name,
        owner=None,
        client_type=Application.CLIENT_CONFIDENTIAL if confidential else Application.CLIENT_PUBLIC,
        authorization_grant_type=grant_type,
        redirect_uris=REDIRECT_URI if grant_type == Application.GRANT_AUTHORIZATION_CODE else "",
        allowed_scopes=allowed_scopes,
        skip_authorization=True,
        require_pkce=require_pkce,
    )
    return RegisteredClient(issued.application, issued.client_secret)


def signed_in(user: User | None = None) -> tuple[Client, User]:
    user = user or UserFactory.create()
    browser = Client()
    browser.force_login(user)
    return browser, user


def authorize(browser: Client, client: RegisteredClient, *, challenge: Pkce | None, **params: str) -> Any:
    """GET the authorization endpoint; keyword arguments add or override parameters ('' drops one)."""
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPES,
        "state": "state-123",
    }
    if challenge is not None:
        query.update(code_challenge=challenge.challenge, code_challenge_method="S256")
    query.update(params)
    return browser.get(
        f"{AUTHORIZE_URL}?{urlencode({key: value for key, value in query.items() if value != ''})}"
    )


def redirect_query(response: Any) -> dict[str, str]:
    assert response.status_code == 302, getattr(response, "content", b"")[:2000]
    location = response["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def authorization_code(
    client: RegisteredClient, *, user: User | None = None, scope: str = SCOPES
) -> tuple[str, Pkce]:
    """A fresh code (and its verifier) for `user`, signed in and consenting as a browser does."""
    browser, _ = signed_in(user)
    challenge = pkce()
    query = redirect_query(authorize(browser, client, challenge=challenge, scope=scope))
    assert "code" in query, query
    return query["code"], challenge


def token_request(data: dict[str, str], **headers: str) -> Any:
    return Client().post(TOKEN_URL, data, headers=headers)


def redeem(client: RegisteredClient, code: str, challenge: Pkce | None) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        **client.credentials(),
    }
    if challenge is not None:
        data["code_verifier"] = challenge.verifier
    return token_request(data)


def tokens(client: RegisteredClient, *, user: User | None = None, scope: str = SCOPES) -> dict[str, Any]:
    code, challenge = authorization_code(client, user=user, scope=scope)
    response = redeem(client, code, challenge)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def refresh(client: RegisteredClient, refresh_token: str, **extra: str) -> Any:
    return token_request(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, **client.credentials(), **extra}
    )


def basic_auth(client: RegisteredClient) -> str:
    return "Basic " + base64.b64encode(f"{client.client_id}:{client.secret}".encode()).decode()


def bearer(access_token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token}")
    return api


def userinfo(access_token: str) -> Any:
    return Client().get(USERINFO_URL, headers={"Authorization": f"Bearer {access_token}"})


def checksum(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def access_token_row(value: str) -> Any:
    return get_access_token_model().objects.filter(token_checksum=checksum(value)).first()


def refresh_token_row(value: str) -> Any:
    return get_refresh_token_model().objects.filter(token_checksum=checksum(value)).order_by("-id").first()


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def oauth_error(error: str, description: str | None = None) -> dict[str, Any]:
    """An RFC 6749 §5.2 body with the project's error keys beside it (config.middleware)."""
    body: dict[str, Any] = {"error": error}
    if description is not None:
        body["error_description"] = description
    body["type"] = "validation_error" if error == "invalid_request" else "client_error"
    detail = description or OAuthErrorShapeMiddleware.DETAILS[error]
    body["errors"] = [{"code": error, "detail": detail, "attr": None}]
    return body
