"""The authorization endpoint over HTTP: sign-in through allauth, `prompt`, `max_age`, `login_hint`,
`state`/`nonce`/`iss`, and the requests that must never be redirected
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY
from django.contrib.auth import SESSION_KEY
from django.test import Client
from oauth2_provider.models import get_grant_model

from accounts.models import Role, User
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import totp_code, totp_enrol
from oauth_provider.models import Application, Consent
from oauth_provider.tests.browser import (
    AUTHORIZE_URL,
    LOGIN_URL,
    REDIRECT_URI,
    SECOND_FACTOR_URL,
    allow,
    authorize_path,
    code_from,
    consent_form,
    deny,
    id_token_claims,
    member,
    oauth_client,
    password_step,
    pkce,
    query_of,
    redeem,
)

pytestmark = pytest.mark.django_db

ISSUER = "http://127.0.0.1:8000"  # SITE_URL of the test settings


@pytest.fixture
def alice() -> User:
    return member(username="alice")


@pytest.fixture
def application() -> Application:
    return oauth_client()


@pytest.fixture
def trusted_application() -> Application:
    return oauth_client(name="Our own app", trusted=True)


def login_redirect(path: str) -> str:
    """Where the endpoint sends a browser to sign in for the authorization request at `path`."""
    return f"{LOGIN_URL}?next={quote(path, safe='/')}"


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def age_sign_in(client: Client, *, seconds: float) -> None:
    """Make the session's sign-in `seconds` older, as if that much time had passed."""
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {**record, "at": record["at"] - seconds} for record in session[AUTHENTICATION_METHODS_SESSION_KEY]
    ]
    session.save()


def sign_in_records(client: Client) -> list[dict[str, Any]]:
    return list(client.session[AUTHENTICATION_METHODS_SESSION_KEY])


def remember_consent(user: User, application: Application, scopes: str = "openid") -> Consent:
    return Consent.objects.create(
        user=user, application=application, scopes=scopes, last_authorized_at="2026-01-01T00:00:00Z"
    )


# --- the whole flow ------------------------------------------------------------------------------


def test_code_flow_signs_in_through_our_pages_consents_and_returns_state_nonce_and_iss(
    client: Client, alice: User, application: Application
) -> None:
    challenge = pkce()
    path = authorize_path(application, challenge, scope="openid profile", nonce="nonce-456")

    to_sign_in = client.get(path)

    assert to_sign_in.status_code == 302
    assert to_sign_in["Location"] == login_redirect(path)
    signed_in = password_step(client, alice, path=to_sign_in["Location"])
    assert signed_in.status_code == 302
    assert signed_in["Location"] == path
    page = client.get(path)
    assert page.status_code == 200
    assert page.templates[0].name == "oauth_provider/authorize.html"
    response = allow(client, page)
    code = code_from(response)
    assert query_of(response["Location"]) == {"code": code, "state": "state-123", "iss": ISSUER}
    tokens = redeem(Client(), application, code, challenge)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "openid profile"
    claims = id_token_claims(tokens["id_token"], application)
    assert claims["nonce"] == "nonce-456"
    assert claims["iss"] == ISSUER
    assert claims["sub"] == str(alice.pk)
    assert claims["amr"] == ["pwd"]


def test_a_claims_request_survives_the_consent_page(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    challenge = pkce()
    claims_request = '{"id_token": {"email": {"essential": true}}}'
    page = client.get(authorize_path(application, challenge, scope="openid email", claims=claims_request))

    code = code_from(allow(client, page))

    assert consent_form(page)["claims"] == claims_request
    tokens = redeem(Client(), application, code, challenge)
    assert id_token_claims(tokens["id_token"], application)["email"] == "alice@example.com"


def test_state_and_nonce_are_optional(client: Client, alice: User, trusted_application: Application) -> None:
    client.force_login(alice)
    challenge = pkce()

    response = client.get(authorize_path(trusted_application, challenge, state=""))

    code = code_from(response)
    assert query_of(response["Location"]) == {"code": code, "iss": ISSUER}
    claims = id_token_claims(
        redeem(Client(), trusted_application, code, challenge)["id_token"], trusted_application
    )
    assert "nonce" not in claims


def test_login_hint_fills_the_sign_in_form(client: Client, application: Application) -> None:
    path = authorize_path(application, pkce(), login_hint="alice@example.com")

    login_page = client.get(client.get(path)["Location"])

    assert login_page.status_code == 200
    assert login_page.context["form"]["login"].value() == "alice@example.com"
    assert 'value="alice@example.com"' in login_page.content.decode()


def test_the_sign_in_form_is_empty_without_a_login_hint(client: Client, application: Application) -> None:
    login_page = client.get(client.get(authorize_path(application, pkce()))["Location"])

    assert login_page.context["form"]["login"].value() is None


def test_a_login_hint_outside_an_authorization_request_is_ignored(client: Client) -> None:
    login_page = client.get(f"{LOGIN_URL}?{urlencode({'next': '/accounts/email/?login_hint=mallory'})}")

    assert login_page.context["form"]["login"].value() is None


# --- prompt --------------------------------------------------------------------------------------


def test_prompt_none_without_a_session_answers_login_required(
    client: Client, application: Application
) -> None:
    response = client.get(authorize_path(application, pkce(), prompt="none"))

    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert query_of(response["Location"]) == {"error": "login_required", "state": "state-123", "iss": ISSUER}


def test_prompt_none_without_consent_answers_consent_required(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)

    response = client.get(authorize_path(application, pkce(), prompt="none"))

    assert response.status_code == 302
    assert query_of(response["Location"]) == {
        "error": "consent_required",
        "state": "state-123",
        "iss": ISSUER,
    }
    assert not Consent.objects.exists()
    assert not get_grant_model().objects.exists()


def test_prompt_none_with_remembered_consent_issues_a_code_without_any_page(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    remember_consent(alice, application)
    challenge = pkce()

    response = client.get(authorize_path(application, challenge, prompt="none"))

    code = code_from(response)
    assert query_of(response["Location"]) == {"code": code, "state": "state-123", "iss": ISSUER}
    assert redeem(Client(), application, code, challenge)["scope"] == "openid"


def test_prompt_none_for_a_trusted_client_issues_a_code(
    client: Client, alice: User, trusted_application: Application
) -> None:
    client.force_login(alice)

    code_from(client.get(authorize_path(trusted_application, pkce(), prompt="none")))


@pytest.mark.parametrize("prompt", ["none login", "none consent"])
def test_prompt_none_with_another_value_is_an_invalid_request(
    client: Client, alice: User, application: Application, prompt: str
) -> None:
    client.force_login(alice)
    remember_consent(alice, application)

    response = client.get(authorize_path(application, pkce(), prompt=prompt))

    assert response.status_code == 302
    assert query_of(response["Location"]) == {
        "error": "invalid_request",
        "error_description": "Prompt none is mutually exclusive with other values.",
        "state": "state-123",
        "iss": ISSUER,
    }


@pytest.mark.parametrize("prompt", ["login", "select_account", "login consent"])
def test_prompt_login_signs_the_user_out_and_in_again(
    client: Client, alice: User, application: Application, prompt: str
) -> None:
    password_step(client, alice, path=LOGIN_URL)
    remember_consent(alice, application)
    first_sign_in = sign_in_records(client)[-1]["at"]
    challenge = pkce()
    path = authorize_path(application, challenge, prompt=prompt)

    to_sign_in = client.get(path)

    assert to_sign_in.status_code == 302
    assert to_sign_in["Location"] == login_redirect(path)
    assert signed_in_user_id(client) is None  # the old sign-in no longer counts
    assert not get_grant_model().objects.exists()
    back = password_step(client, alice, path=to_sign_in["Location"])
    assert back["Location"] == path
    response = client.get(path)  # once: no loop back to the sign-in
    if "consent" in prompt:
        response = allow(client, response)
    code = code_from(response)
    claims = id_token_claims(redeem(Client(), application, code, challenge)["id_token"], application)
    assert claims["auth_time"] >= int(first_sign_in)
    assert claims["auth_time"] == int(sign_in_records(client)[-1]["at"])


def test_prompt_login_without_a_session_signs_in_once(
    client: Client, alice: User, application: Application
) -> None:
    remember_consent(alice, application)
    path = authorize_path(application, pkce(), prompt="login")

    to_sign_in = client.get(path)
    password_step(client, alice, path=to_sign_in["Location"])

    code_from(client.get(path))


def test_prompt_consent_shows_the_page_although_consent_is_remembered(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    remember_consent(alice, application)

    page = client.get(authorize_path(application, pkce(), prompt="consent"))

    assert page.status_code == 200
    assert page.templates[0].name == "oauth_provider/authorize.html"


def test_prompt_create_sends_a_visitor_to_sign_up_and_back(client: Client, application: Application) -> None:
    path = authorize_path(application, pkce(), prompt="create consent")

    response = client.get(path)

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/accounts/signup/"
    [next_url] = parse_qs(location.query)["next"]
    assert urlsplit(next_url).path == AUTHORIZE_URL
    assert query_of(next_url) == {**query_of(path), "prompt": "consent"}  # `create` is done with


def test_prompt_create_for_a_signed_in_user_changes_nothing(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    remember_consent(alice, application)

    code_from(client.get(authorize_path(application, pkce(), prompt="create")))


# --- max_age -----------------------------------------------------------------------------------


def test_max_age_older_than_the_sign_in_asks_for_both_factors_again(
    client: Client, application: Application
) -> None:
    bob = member(username="bob")
    secret = totp_enrol(bob)
    assert password_step(client, bob, path=LOGIN_URL)["Location"] == SECOND_FACTOR_URL
    assert client.post(SECOND_FACTOR_URL, {"code": totp_code(secret)}).status_code == 302
    remember_consent(bob, application)
    age_sign_in(client, seconds=3600)
    challenge = pkce()
    path = authorize_path(application, challenge, max_age="300")

    to_sign_in = client.get(path)

    assert to_sign_in["Location"] == login_redirect(path)
    assert signed_in_user_id(client) is None
    second_factor = password_step(client, bob, path=to_sign_in["Location"])
    assert second_factor["Location"] == SECOND_FACTOR_URL  # the MFA step, again
    assert signed_in_user_id(client) is None
    back = client.post(SECOND_FACTOR_URL, {"code": totp_code(secret, steps_from_now=1)})
    assert back["Location"] == path
    code = code_from(client.get(path))
    claims = id_token_claims(redeem(Client(), application, code, challenge)["id_token"], application)
    assert time.time() - claims["auth_time"] < 60
    assert claims["amr"] == ["mfa", "otp", "pwd"]
    assert claims["acr"] == "2"


def test_max_age_within_the_sign_in_issues_a_code(
    client: Client, alice: User, application: Application
) -> None:
    password_step(client, alice, path=LOGIN_URL)
    remember_consent(alice, application)
    age_sign_in(client, seconds=100)

    code_from(client.get(authorize_path(application, pkce(), max_age="300")))

    assert signed_in_user_id(client) == str(alice.pk)


def test_max_age_zero_signs_in_once_and_does_not_loop(
    client: Client, alice: User, application: Application
) -> None:
    password_step(client, alice, path=LOGIN_URL)
    remember_consent(alice, application)
    path = authorize_path(application, pkce(), max_age="0")

    to_sign_in = client.get(path)
    assert to_sign_in["Location"] == login_redirect(path)
    password_step(client, alice, path=to_sign_in["Location"])
    time.sleep(1.1)  # the new sign-in is older than max_age=0 when the browser comes back

    code_from(client.get(path))


def test_max_age_with_a_session_of_unknown_age_asks_to_sign_in(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)  # a session without allauth's records of how it signed in
    remember_consent(alice, application)
    path = authorize_path(application, pkce(), max_age="3600")

    assert client.get(path)["Location"] == login_redirect(path)


def test_max_age_with_prompt_none_and_an_old_sign_in_answers_login_required(
    client: Client, alice: User, application: Application
) -> None:
    password_step(client, alice, path=LOGIN_URL)
    remember_consent(alice, application)
    age_sign_in(client, seconds=3600)

    response = client.get(authorize_path(application, pkce(), max_age="60", prompt="none"))

    assert query_of(response["Location"]) == {"error": "login_required", "state": "state-123", "iss": ISSUER}
    assert signed_in_user_id(client) == str(alice.pk)  # prompt=none never shows a page, nor signs out


@pytest.mark.parametrize("max_age", ["-1", "ten", "1.5", "²"])
def test_max_age_must_be_a_whole_number_of_seconds(
    client: Client, alice: User, application: Application, max_age: str
) -> None:
    client.force_login(alice)

    response = client.get(authorize_path(application, pkce(), max_age=max_age))

    assert query_of(response["Location"]) == {
        "error": "invalid_request",
        "error_description": "max_age must be a whole number of seconds.",
        "state": "state-123",
        "iss": ISSUER,
    }


# --- requests that are never sent back ------------------------------------------------------------


BAD_REQUEST_CASES = [
    "unknown client_id",
    "no client_id",
    "unregistered redirect_uri",
    "extra path",
    "different port",
    "http, not loopback",
    "wildcard",
    "extra query",
    "fragment",
    "other host, same path",
]


def bad_request_paths(application: Application) -> dict[str, str]:
    challenge = pkce()
    return {
        "unknown client_id": authorize_path(application, challenge, client_id="no-such-client"),
        "no client_id": authorize_path(application, challenge, client_id=""),
        "unregistered redirect_uri": authorize_path(
            application, challenge, redirect_uri="https://evil.example.net/callback"
        ),
        "extra path": authorize_path(application, challenge, redirect_uri=REDIRECT_URI + "/more"),
        "different port": authorize_path(
            application, challenge, redirect_uri="https://app.example.com:8443/callback"
        ),
        "http, not loopback": authorize_path(
            application, challenge, redirect_uri="http://app.example.com/callback"
        ),
        "wildcard": authorize_path(application, challenge, redirect_uri="https://*.example.com/callback"),
        "extra query": authorize_path(application, challenge, redirect_uri=REDIRECT_URI + "?next=/admin"),
        "fragment": authorize_path(application, challenge, redirect_uri=REDIRECT_URI + "#x"),
        "other host, same path": authorize_path(
            application, challenge, redirect_uri="https://app.example.com.evil.net/callback"
        ),
    }


@pytest.mark.parametrize("case", BAD_REQUEST_CASES)
@pytest.mark.parametrize("signed_in", [False, True])
def test_a_bad_client_or_redirect_uri_is_an_error_page_and_never_a_redirect(
    client: Client, alice: User, application: Application, case: str, signed_in: bool
) -> None:
    if signed_in:
        client.force_login(alice)

    response = client.get(bad_request_paths(application)[case])

    assert response.status_code == 400
    assert "Location" not in response
    assert response.templates[0].name == "oauth_provider/authorize_error.html"
    assert "This sign-in request is not valid" in response.content.decode()
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert not get_grant_model().objects.exists()
    assert not Consent.objects.exists()


def test_a_registered_http_redirect_uri_outside_loopback_is_never_used(
    client: Client, alice: User, application: Application
) -> None:
    # Written behind the registration policy's back (the policy refuses such a URI).
    Application.objects.filter(pk=application.pk).update(redirect_uris="http://app.example.com/callback")
    client.force_login(alice)

    response = client.get(authorize_path(application, pkce(), redirect_uri="http://app.example.com/callback"))

    assert response.status_code == 400
    assert "Location" not in response


def test_a_tampered_redirect_uri_in_the_consent_form_is_an_error_page(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    page = client.get(authorize_path(application, pkce()))

    for answer in ({"allow": "true"}, {}):
        response = client.post(
            AUTHORIZE_URL,
            {**consent_form(page), **answer, "redirect_uri": "https://evil.example.net/callback"},
        )

        assert response.status_code == 400
        assert "Location" not in response
    assert not get_grant_model().objects.exists()
    assert not Consent.objects.exists()


def test_a_tampered_client_id_in_the_consent_form_is_an_error_page(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    page = client.get(authorize_path(application, pkce()))

    response = client.post(
        AUTHORIZE_URL, {**consent_form(page), "allow": "true", "client_id": "no-such-client"}
    )

    assert response.status_code == 400
    assert "Location" not in response


# --- other errors go back to the client ----------------------------------------------------------


def test_a_scope_the_client_may_not_have_goes_back_with_invalid_scope(
    client: Client, alice: User, application: Application
) -> None:
    """A known scope outside the client's; unknown ones are ignored (test_scopes.py)."""
    client.force_login(alice)

    response = client.get(authorize_path(application, pkce(), scope="openid users:write everything"))

    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT_URI + "?")
    query = query_of(response["Location"])
    assert (query["error"], query["state"], query["iss"]) == ("invalid_scope", "state-123", ISSUER)


def test_a_public_client_without_pkce_goes_back_with_invalid_request(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)

    response = client.get(authorize_path(application))

    query = query_of(response["Location"])
    assert (query["error"], query["state"], query["iss"]) == ("invalid_request", "state-123", ISSUER)
    assert not get_grant_model().objects.exists()


def test_deny_goes_back_with_access_denied_and_the_state(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    page = client.get(authorize_path(application, pkce(), scope="openid email"))

    response = deny(client, page)

    assert response.status_code == 302
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert query_of(response["Location"]) == {"error": "access_denied", "state": "state-123", "iss": ISSUER}
    assert not get_grant_model().objects.exists()
    assert not Consent.objects.exists()


# --- the consent page ------------------------------------------------------------------------------


def test_the_consent_page_names_the_application_its_logo_links_scopes_and_the_user(
    client: Client, alice: User, application: Application
) -> None:
    Application.objects.filter(pk=application.pk).update(
        logo_uri="https://cdn.example.com/logo.png",
        client_uri="https://app.example.com/",
        policy_uri="https://app.example.com/privacy",
        tos_uri="https://app.example.com/terms",
    )
    client.force_login(alice)

    page = client.get(authorize_path(application, pkce(), scope="openid profile email offline_access"))

    html = page.content.decode()
    assert page.status_code == 200
    assert "Photo printer wants to use your account" in html
    assert '<img src="https://cdn.example.com/logo.png" alt="Photo printer logo"' in html
    assert '<a href="https://app.example.com/privacy" rel="noopener noreferrer">Privacy policy</a>' in html
    assert '<a href="https://app.example.com/terms" rel="noopener noreferrer">Terms of service</a>' in html
    assert "Signed in as <strong>alice</strong> (alice@example.com)" in html
    for scope, words in (
        ("openid", "Sign you in with your account"),
        ("profile", "See your name and username"),
        ("email", "See your e-mail address"),
        ("offline_access", "Stay signed in when you are not using the application"),
    ):
        assert f'<li data-scope="{scope}">{words}</li>' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "<script" not in html
    assert "img-src 'self' data: blob: https://cdn.example.com" in page["Content-Security-Policy"]
    assert page["Cache-Control"] == "max-age=0, no-cache, no-store, must-revalidate, private"
    assert page["X-Frame-Options"] == "DENY"


def test_an_http_logo_is_not_shown(client: Client, alice: User, application: Application) -> None:
    Application.objects.filter(pk=application.pk).update(logo_uri="http://cdn.example.com/logo.png")
    client.force_login(alice)

    page = client.get(authorize_path(application, pkce()))

    assert "cdn.example.com" not in page.content.decode()
    assert "cdn.example.com" not in page["Content-Security-Policy"]


def test_the_consent_answer_needs_the_csrf_token(alice: User, application: Application) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    page = browser.get(authorize_path(application, pkce()))
    form = consent_form(page)

    response = browser.post(AUTHORIZE_URL, {**form, "allow": "true"})

    assert response.status_code == 403
    assert not get_grant_model().objects.exists()
    assert not Consent.objects.exists()


def test_a_consent_answer_after_the_session_ended_signs_in_and_shows_the_page_again(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    page = client.get(authorize_path(application, pkce(), scope="openid email"))
    form = consent_form(page)
    client.logout()

    response = client.post(AUTHORIZE_URL, {**form, "allow": "true"})

    assert response.status_code == 302
    next_url = parse_qs(urlsplit(response["Location"]).query)["next"][0]
    assert urlsplit(response["Location"]).path == LOGIN_URL
    assert query_of(next_url) == {key: value for key, value in form.items() if value}
    assert not get_grant_model().objects.exists()


# --- a role that requires a second factor not set up yet --------------------------------------


@pytest.fixture
def moderator_without_mfa(client: Client) -> User:
    """Signed in with a password only, as the sign-in pages let them before enrolment."""
    moderator = member(username="mod")
    user_set_roles(user=moderator, roles=[Role.MODERATOR])
    assert password_step(client, moderator, path=LOGIN_URL).status_code == 302
    return moderator


@pytest.mark.usefixtures("moderator_without_mfa")
def test_a_user_who_must_set_up_a_second_factor_is_sent_to_do_so_before_any_code(
    client: Client, trusted_application: Application
) -> None:
    response = client.get(authorize_path(trusted_application, pkce()))

    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/"
    assert get_grant_model().objects.count() == 0


@pytest.mark.usefixtures("moderator_without_mfa")
def test_prompt_none_for_such_a_user_answers_interaction_required_without_a_page(
    client: Client, trusted_application: Application
) -> None:
    response = client.get(authorize_path(trusted_application, pkce(), prompt="none"))

    assert query_of(response["Location"]) == {
        "error": "interaction_required",
        "error_description": "The account must set up a second factor first.",
        "state": "state-123",
        "iss": ISSUER,
    }
    assert response["Location"].startswith(REDIRECT_URI + "?")
    assert get_grant_model().objects.count() == 0


@pytest.mark.usefixtures("moderator_without_mfa")
def test_such_a_users_bad_request_is_still_the_error_page(
    client: Client, trusted_application: Application
) -> None:
    response = client.get(authorize_path(trusted_application, pkce(), redirect_uri="https://evil.example/"))

    assert response.status_code == 400
    assert response.templates[0].name == "oauth_provider/authorize_error.html"


@pytest.mark.usefixtures("moderator_without_mfa")
def test_a_consent_answer_from_such_a_user_issues_no_code(client: Client, application: Application) -> None:
    form = {
        "client_id": application.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid",
        "state": "state-123",
        "code_challenge": pkce().challenge,
        "code_challenge_method": "S256",
        "allow": "true",
    }

    response = client.post(AUTHORIZE_URL, form)

    assert response["Location"] == "/accounts/2fa/"
    assert get_grant_model().objects.count() == 0


def test_after_setting_up_a_factor_the_interrupted_request_is_offered_back(
    client: Client, trusted_application: Application, moderator_without_mfa: User
) -> None:
    path = authorize_path(trusted_application, pkce())
    assert client.get(path)["Location"] == "/accounts/2fa/"
    before = client.get("/accounts/2fa/")
    assert "Continue to the application" not in before.content.decode()  # no factor yet

    totp_enrol(moderator_without_mfa)  # as allauth's activation page does
    page = client.get("/accounts/2fa/")

    assert page.status_code == 200
    assert page.context["mfa_resume_url"] == path
    code_from(client.get(page.context["mfa_resume_url"]))
    assert "mfa_resume_url" not in client.get("/accounts/2fa/").context  # offered once
