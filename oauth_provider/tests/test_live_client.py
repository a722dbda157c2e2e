"""The whole authorization server driven by a client library nobody here wrote, over real HTTP.

A live server (a thread of this process, on PostgreSQL in CI), Authlib's OAuth 2 client for the
relying party and a resource server, joserfc (Authlib's JOSE layer) for the ID token, and a
`requests` session as the user's browser, which reads each HTML form and posts it back as a browser
would: discovery → authorize (our sign-in pages with a second factor, then the consent page) →
token → ID token checked against the JWKS (signature, `iss`, `aud`, `nonce`, `exp`, `at_hash`) →
userinfo → refresh with rotation → reuse detected → revoke → introspect → RP-initiated logout.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidClaimError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, totp_code, totp_enrol
from oauth_provider.models import Application
from oauth_provider.services import application_create
from oauth_provider.services.registration import initial_access_token_issue
from oauth_provider.tests.browser import member

pytestmark = pytest.mark.django_db(transaction=True)

REDIRECT_URI = "https://printer.example/callback"
POST_LOGOUT_REDIRECT_URI = "https://printer.example/signed-out"
NATIVE_REDIRECT_URI = "http://127.0.0.1:53682/callback"  # RFC 8252 §7.3: a loopback port
SCOPES = "openid profile email offline_access users:read"


SessionT = TypeVar("SessionT", bound=requests.Session)


_OPEN_SESSIONS: list[requests.Session] = []


def opened(session: SessionT) -> SessionT:
    """A client session, closed when the test ends (`close_sessions`)."""
    _OPEN_SESSIONS.append(session)
    return session


@pytest.fixture(autouse=True)
def close_sessions() -> Iterator[None]:
    """The live server's thread for a kept-alive connection holds a database connection until the
    socket closes; the test database cannot be dropped while one is open. A socket closes once its
    session is closed and the responses read from it are gone (they hold its file)."""
    yield
    while _OPEN_SESSIONS:
        _OPEN_SESSIONS.pop().close()
    gc.collect()


# --- the browser ---------------------------------------------------------------------------------


@dataclass
class Form:
    action: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class FormParser(HTMLParser):
    """The POST forms of a page: their action, inputs (hidden and filled-in) and named buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and attributes.get("method", "get").lower() == "post":
            self._open = Form(action=attributes.get("action", ""))
            self.forms.append(self._open)
        elif self._open is not None and tag == "input" and attributes.get("name"):
            if attributes.get("type") in {"submit", "button"}:
                self._open.buttons.append((attributes["name"], attributes.get("value", "")))
            elif attributes.get("type") != "checkbox" or "checked" in attributes:
                self._open.fields[attributes["name"]] = attributes.get("value", "")
        elif self._open is not None and tag == "button" and attributes.get("name"):
            self._open.buttons.append((attributes["name"], attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


class Browser:
    """A person's browser: cookies, redirects followed, forms read from the HTML and posted back."""

    def __init__(self) -> None:
        self.session = opened(requests.Session())
        self.page: requests.Response | None = None

    def get(self, url: str) -> requests.Response:
        self.page = self.session.get(url, timeout=30)
        return self.page

    def form_with(self, name: str) -> Form:
        assert self.page is not None
        parser = FormParser()
        parser.feed(self.page.text)
        forms = [form for form in parser.forms if name in form.fields]
        assert forms, f"no form with {name!r} at {self.page.url}: {self.page.text[:1500]}"
        return forms[0]

    def submit(
        self, form: Form, *, button: str | None = None, follow: bool = True, **values: str
    ) -> requests.Response:
        assert self.page is not None
        data = {**form.fields, **values}
        if button is not None:
            data[button] = dict(form.buttons)[button]
        response = self.session.post(
            urljoin(self.page.url, form.action or self.page.url),
            data=data,
            allow_redirects=follow,
            timeout=30,
        )
        if follow:
            self.page = response
        return response


def sign_in(browser: Browser, user: User, *, totp_secret: str) -> None:
    """Our sign-in page, then the second factor's page, as the person types them."""
    browser.submit(browser.form_with("login"), login=user.username, password=DEFAULT_PASSWORD)
    assert urlsplit(browser.page.url).path == "/accounts/2fa/authenticate/"  # type: ignore[union-attr]
    browser.submit(browser.form_with("code"), code=totp_code(totp_secret))


def callback_query(response: requests.Response) -> dict[str, str]:
    """The authorization response: a redirect to the client's registered URI, never followed here."""
    assert response.status_code == 302, response.text[:1500]
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


# --- the relying party ----------------------------------------------------------------------------


@dataclass
class RelyingParty:
    """What a third-party application holds: its credentials and the server's metadata."""

    client_id: str
    client_secret: str
    metadata: dict[str, Any]

    def session(self, **kwargs: Any) -> OAuth2Session:
        return opened(
            OAuth2Session(
                self.client_id,
                self.client_secret,
                scope=SCOPES,
                redirect_uri=REDIRECT_URI,
                code_challenge_method="S256",
                token_endpoint_auth_method="client_secret_basic",
                **kwargs,
            )
        )

    def id_token_claims(self, token: dict[str, Any], *, nonce: str) -> CodeIDToken:
        """Validate the ID token as an OpenID Connect client does (Core §3.1.3.7)."""
        jwks = requests.get(self.metadata["jwks_uri"], timeout=30).json()
        decoded = jwt.decode(
            token["id_token"],
            KeySet.import_key_set(jwks),
            registry=JWSRegistry(algorithms=["RS256"]),
        )
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "value": self.metadata["issuer"]},
                "aud": {"essential": True, "value": self.client_id},
                "exp": {"essential": True},
                "nonce": {"essential": True},
            },
            {"nonce": nonce, "client_id": self.client_id, "access_token": token["access_token"]},
        )
        claims.validate()
        return claims


@pytest.fixture
def issuer(live_server: Any, settings: Any) -> str:
    """The live server is the issuer: SITE_URL and the toolkit's issuer follow its random port.

    Its plain http needs the session and CSRF cookies without `Secure` (a browser would drop them).
    """
    url = live_server.url
    settings.SITE_URL = url
    settings.OAUTH2_PROVIDER = {
        **settings.OAUTH2_PROVIDER,
        "OIDC_ISS_ENDPOINT": url,
        "OAUTH2_PROTECTED_RESOURCE_IDENTIFIER": url,
    }
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    return url


@pytest.fixture
def relying_party(issuer: str) -> RelyingParty:
    issued = application_create(
        name="Photo printer",
        owner=None,
        redirect_uris=REDIRECT_URI,
        allowed_scopes=SCOPES,
        metadata={"post_logout_redirect_uris": POST_LOGOUT_REDIRECT_URI},
    )
    metadata = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=30).json()
    return RelyingParty(issued.application.client_id, issued.client_secret, metadata)


@pytest.fixture
def resource_server(issuer: str) -> OAuth2Session:
    """A resource server with its own credentials and the `introspection` permission (RFC 7662)."""
    issued = application_create(
        name="Files API",
        owner=None,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        allowed_scopes="introspection",
    )
    return opened(
        OAuth2Session(
            issued.application.client_id,
            issued.client_secret,
            token_endpoint_auth_method="client_secret_basic",
        )
    )


def authorization_request(rp: RelyingParty) -> tuple[OAuth2Session, str, str, str, str]:
    """Authlib's authorization URL with PKCE S256, a state and a nonce."""
    client = rp.session()
    verifier, nonce = generate_token(48), generate_token(20)
    url, state = client.create_authorization_url(
        rp.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    return client, url, state, verifier, nonce


# --- the flow --------------------------------------------------------------------------------------


def test_a_relying_party_signs_a_user_in_and_uses_refreshes_revokes_and_introspects_tokens(
    issuer: str, relying_party: RelyingParty, resource_server: OAuth2Session
) -> None:
    rp, metadata = relying_party, relying_party.metadata
    ada = member(username="ada", email="ada@example.com")
    totp_secret = totp_enrol(ada)

    # Discovery: everything the client needs, at the issuer.
    assert metadata["issuer"] == issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True

    # Authorize: our sign-in with both factors, then the consent page, in a browser.
    client, url, state, verifier, nonce = authorization_request(rp)
    browser = Browser()
    browser.get(url)
    assert urlsplit(browser.page.url).path == "/accounts/login/"  # type: ignore[union-attr]
    sign_in(browser, ada, totp_secret=totp_secret)
    assert "Photo printer wants to use your account" in browser.page.text  # type: ignore[union-attr]
    query = callback_query(browser.submit(browser.form_with("client_id"), button="allow", follow=False))
    assert (query["state"], query["iss"]) == (state, issuer)  # RFC 9207

    # Token: Authlib checks the state and sends the verifier and the client's Basic credentials.
    callback = f"{REDIRECT_URI}?code={query['code']}&state={query['state']}&iss={query['iss']}"
    token = client.fetch_token(
        metadata["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == set(SCOPES.split())
    assert 0 < token["expires_in"] <= 600

    # The ID token against the JWKS: signature, iss, aud, nonce, exp (and at_hash).
    claims = rp.id_token_claims(token, nonce=nonce)
    assert claims["sub"] == str(ada.pk)
    assert claims["exp"] > time.time()
    assert claims["acr"] == "2"
    assert "mfa" in claims["amr"]
    assert abs(time.time() - claims["auth_time"]) < 120
    with pytest.raises(InvalidClaimError):  # a replayed ID token, for another login attempt
        rp.id_token_claims(token, nonce="another-nonce")

    # Userinfo with the access token.
    userinfo = client.get(metadata["userinfo_endpoint"], timeout=30)
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["email"] == "ada@example.com"

    # Refresh with rotation: a new refresh token, the old one retired.
    first = dict(token)
    rotated = client.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"])
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]

    # Reuse detected: the retired refresh token, presented again, ends the whole family.
    with pytest.raises(OAuthError) as reused:
        rp.session().refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"])
    assert reused.value.error == "invalid_grant"
    with pytest.raises(OAuthError):
        rp.session().refresh_token(metadata["token_endpoint"], refresh_token=rotated["refresh_token"])
    introspected = resource_server.introspect_token(
        metadata["introspection_endpoint"], token=rotated["access_token"]
    )
    assert introspected.json() == {"active": False}

    # A new sign-in: consent is remembered, so the browser comes straight back with a code.
    client, url, state, verifier, nonce = authorization_request(rp)
    query = callback_query(browser.session.get(url, allow_redirects=False, timeout=30))
    fresh = client.fetch_token(
        metadata["token_endpoint"],
        authorization_response=f"{REDIRECT_URI}?code={query['code']}&state={query['state']}",
        state=state,
        code_verifier=verifier,
    )

    # Introspect (the resource server's own credentials), revoke, introspect again.
    live = resource_server.introspect_token(metadata["introspection_endpoint"], token=fresh["access_token"])
    assert live.status_code == 200
    assert live.json()["active"] is True
    assert live.json()["client_id"] == rp.client_id
    assert set(live.json()["scope"].split()) == set(SCOPES.split())
    revoked = client.revoke_token(
        metadata["revocation_endpoint"], token=fresh["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoked.status_code == 200
    dead = resource_server.introspect_token(metadata["introspection_endpoint"], token=fresh["access_token"])
    assert dead.json() == {"active": False}  # revoking a refresh token takes its access token
    assert client.get(metadata["userinfo_endpoint"], timeout=30).status_code == 401

    # RP-initiated logout: the user confirms, the session ends, the client hears back.
    logout = browser.get(
        f"{metadata['end_session_endpoint']}?"
        + "&".join(
            f"{key}={value}"
            for key, value in {
                "id_token_hint": fresh["id_token"],
                "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI,
                "state": "bye",
            }.items()
        )
    )
    assert logout.status_code == 200
    assert "Photo printer asks you to sign out" in logout.text
    back = browser.submit(browser.form_with("id_token_hint"), button="allow", follow=False)
    assert back.status_code == 302
    assert back.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state=bye"
    browser.get(authorization_request(rp)[1])
    assert urlsplit(browser.page.url).path == "/accounts/login/"  # type: ignore[union-attr]


def test_a_native_client_discovers_the_server_from_the_api_registers_and_calls_the_api(
    issuer: str,
) -> None:
    """What an MCP-style client does with nothing but the API's URL and an initial access token:
    the 401's `resource_metadata` (RFC 9728) → the authorization server's metadata (RFC 8414) →
    registration (RFC 7591) as a public loopback client → the code flow with PKCE → the API."""
    ada = member(username="ada", email="ada@example.com")
    totp_secret = totp_enrol(ada)
    initial_access_token = initial_access_token_issue(label="Notes CLI", created_by=None).token
    api = opened(requests.Session())

    refused = api.get(f"{issuer}/api/v1/users/me/", timeout=30)
    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    resource_metadata_url = re.search(r'resource_metadata="([^"]+)"', challenge)[1]  # type: ignore[index]
    resource = api.get(resource_metadata_url, timeout=30).json()
    assert resource["resource"] == issuer
    assert "users:read" in resource["scopes_supported"]
    [authorization_server] = resource["authorization_servers"]
    metadata = api.get(f"{authorization_server}/.well-known/oauth-authorization-server", timeout=30).json()
    assert metadata["issuer"] == authorization_server == issuer

    registered = api.post(
        metadata["registration_endpoint"],
        json={
            "client_name": "Notes CLI",
            "redirect_uris": [NATIVE_REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid users:read",
        },
        headers={"Authorization": f"Bearer {initial_access_token}"},
        timeout=30,
    )
    assert registered.status_code == 201, registered.text
    client_id = registered.json()["client_id"]
    assert "client_secret" not in registered.json()

    client = opened(
        OAuth2Session(
            client_id,
            scope="openid users:read",
            redirect_uri=NATIVE_REDIRECT_URI,
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        )
    )
    verifier = generate_token(48)
    url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
    browser = Browser()
    browser.get(url)
    sign_in(browser, ada, totp_secret=totp_secret)
    assert "Notes CLI wants to use your account" in browser.page.text  # type: ignore[union-attr]
    answer = browser.submit(browser.form_with("client_id"), button="allow", follow=False)
    assert answer.headers["Location"].startswith(NATIVE_REDIRECT_URI + "?")
    token = client.fetch_token(
        metadata["token_endpoint"],
        authorization_response=answer.headers["Location"],
        state=state,
        code_verifier=verifier,
    )

    me = client.get(f"{issuer}/api/v1/users/me/", timeout=30)
    assert me.status_code == 200
    assert me.json()["username"] == "ada"
    assert (
        client.patch(f"{issuer}/api/v1/users/me/", json={"description": "x"}, timeout=30).status_code == 403
    )
    assert token["scope"].split() == ["openid", "users:read"]
