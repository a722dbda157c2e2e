"""Consent over HTTP: shown, remembered per user and client, widened, forced, skipped for trusted
clients, and audited (docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

import pytest
from django.test import Client
from oauth2_provider.models import get_grant_model

from accounts.models import User
from audit.models import AuditEvent
from oauth_provider.models import Application, Consent
from oauth_provider.services.consents import ConsentNotFound, consent_revoke
from oauth_provider.tests.browser import (
    AUTHORIZE_URL,
    REDIRECT_URI,
    allow,
    authorize_path,
    code_from,
    consent_form,
    deny,
    member,
    oauth_client,
    pkce,
    query_of,
    redeem,
    tokens_for,
)

pytestmark = pytest.mark.django_db

CONSENT_PAGE = "oauth_provider/authorize.html"


@pytest.fixture
def alice() -> User:
    return member(username="alice")


@pytest.fixture
def application() -> Application:
    return oauth_client()


def is_consent_page(response: object) -> bool:
    return response.status_code == 200 and CONSENT_PAGE in [t.name for t in response.templates]  # type: ignore[attr-defined]


def granted_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="oauth.consent.granted").order_by("id"))


def test_consent_is_asked_once_then_remembered(client: Client, alice: User, application: Application) -> None:
    client.force_login(alice)
    path = authorize_path(application, pkce(), scope="openid email")

    first = client.get(path)
    assert is_consent_page(first)
    code_from(allow(client, first))
    again = client.get(authorize_path(application, pkce(), scope="openid email"))

    code_from(again)  # straight back to the client
    consent = Consent.objects.get()
    assert (consent.user, consent.application, consent.scopes, consent.revoked_at) == (
        alice,
        application,
        "email openid",
        None,
    )
    assert consent.last_authorized_at > consent.created_at
    [event] = granted_events()
    assert (event.actor_id, event.target_type, event.target_id) == (
        str(alice.pk),
        "oauth_provider.consent",
        str(consent.pk),
    )
    assert event.metadata == {
        "client_id": application.client_id,
        "scopes": ["email", "openid"],
        "added_scopes": ["email", "openid"],
        "consented_scopes": ["email", "openid"],
        "prompted": True,
        "trusted_client": False,
    }


def test_fewer_scopes_than_consented_need_no_page(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    code_from(allow(client, client.get(authorize_path(application, pkce(), scope="openid profile email"))))

    code_from(client.get(authorize_path(application, pkce(), scope="openid")))

    assert len(granted_events()) == 1  # a silent authorization within the consent is not an event


def test_new_scopes_ask_again_and_widen_the_consent(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    code_from(allow(client, client.get(authorize_path(application, pkce(), scope="openid"))))

    page = client.get(authorize_path(application, pkce(), scope="openid profile"))

    assert is_consent_page(page)
    code_from(allow(client, page))
    assert Consent.objects.get().scopes == "openid profile"
    assert granted_events()[-1].metadata == {
        "client_id": application.client_id,
        "scopes": ["openid", "profile"],
        "added_scopes": ["profile"],
        "consented_scopes": ["openid", "profile"],
        "prompted": True,
        "trusted_client": False,
    }


def test_prompt_consent_asks_again_and_is_recorded(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    code_from(allow(client, client.get(authorize_path(application, pkce()))))

    page = client.get(authorize_path(application, pkce(), prompt="consent"))

    assert is_consent_page(page)
    code_from(allow(client, page))
    assert Consent.objects.count() == 1
    assert [event.metadata["added_scopes"] for event in granted_events()] == [["openid"], []]


def test_consent_is_per_client(client: Client, alice: User, application: Application) -> None:
    other = oauth_client(name="Other app")
    client.force_login(alice)
    code_from(allow(client, client.get(authorize_path(application, pkce()))))

    assert is_consent_page(client.get(authorize_path(other, pkce())))


def test_consent_is_per_user(alice: User, application: Application) -> None:
    first, second = Client(), Client()
    first.force_login(alice)
    second.force_login(member(username="bob"))
    code_from(allow(first, first.get(authorize_path(application, pkce()))))

    assert is_consent_page(second.get(authorize_path(application, pkce())))


def test_trusted_clients_never_show_the_page_not_even_for_prompt_consent(client: Client, alice: User) -> None:
    trusted = oauth_client(name="Our own app", trusted=True)
    client.force_login(alice)

    code_from(client.get(authorize_path(trusted, pkce(), scope="openid email")))
    code_from(client.get(authorize_path(trusted, pkce(), scope="openid email", prompt="consent")))

    # Still listed among the user's applications, so the user can sign it out.
    assert Consent.objects.get().scopes == "email openid"
    [event] = granted_events()
    assert event.metadata == {
        "client_id": trusted.client_id,
        "scopes": ["email", "openid"],
        "added_scopes": ["email", "openid"],
        "consented_scopes": ["email", "openid"],
        "prompted": False,
        "trusted_client": True,
    }


def test_deny_remembers_nothing(client: Client, alice: User, application: Application) -> None:
    client.force_login(alice)

    deny(client, client.get(authorize_path(application, pkce())))

    assert not Consent.objects.exists()
    assert granted_events() == []
    assert is_consent_page(client.get(authorize_path(application, pkce())))


def test_a_revoked_consent_is_asked_again_and_starts_anew(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    code_from(allow(client, client.get(authorize_path(application, pkce()))))
    old = Consent.objects.get()
    consent_revoke(user=alice, application=application)

    page = client.get(authorize_path(application, pkce()))

    assert is_consent_page(page)
    code_from(allow(client, page))
    old.refresh_from_db()
    assert old.revoked_at is not None
    assert Consent.objects.live().get().pk != old.pk


def test_revoking_ends_the_consent_and_every_token_and_code(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    code_from(allow(client, client.get(authorize_path(application, pkce(), scope="openid email"))))
    tokens = tokens_for(client, application, scope="openid email")
    unredeemed = code_from(client.get(authorize_path(application, pkce())))
    other = oauth_client(name="Other app", trusted=True)
    kept = tokens_for(client, other)

    consent = consent_revoke(user=alice, application=application)

    assert consent.revoked_at is not None
    assert not get_grant_model().objects.filter(code=unredeemed).exists()
    assert (
        Client()
        .get("/o/userinfo/", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        .status_code
        == 401
    )
    refresh = Client().post(
        "/o/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": application.client_id,
        },
    )
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
    assert (
        Client().get("/o/userinfo/", headers={"Authorization": f"Bearer {kept['access_token']}"}).status_code
        == 200
    )
    [event] = AuditEvent.objects.filter(action="oauth.consent.revoked")
    assert (event.actor_id, event.target_id) == (str(alice.pk), str(consent.pk))
    assert event.metadata == {"client_id": application.client_id, "scopes": ["email", "openid"]}


def test_revoking_without_a_consent_changes_nothing(
    client: Client, alice: User, application: Application
) -> None:
    trusted_tokens_app = oauth_client(name="Our own app", trusted=True)
    client.force_login(alice)
    tokens = tokens_for(client, trusted_tokens_app)
    Consent.objects.all().delete()

    with pytest.raises(ConsentNotFound):
        consent_revoke(user=alice, application=trusted_tokens_app)

    assert (
        Client()
        .get("/o/userinfo/", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        .status_code
        == 200
    )
    assert not AuditEvent.objects.filter(action="oauth.consent.revoked").exists()


def test_the_code_redeemed_after_consent_carries_the_consented_scopes(
    client: Client, alice: User, application: Application
) -> None:
    client.force_login(alice)
    challenge = pkce()

    code = code_from(
        allow(client, client.get(authorize_path(application, challenge, scope="openid profile")))
    )

    assert redeem(Client(), application, code, challenge)["scope"] == "openid profile"


@pytest.mark.parametrize(
    ("tampered", "error"),
    [
        pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="plain-challenge"),
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit-response-type"),
        pytest.param({"scope": "openid users:write"}, "invalid_scope", id="scope-not-allowed"),
    ],
)
def test_an_allow_that_fails_authorization_remembers_no_consent(
    client: Client, alice: User, application: Application, tampered: dict[str, str], error: str
) -> None:
    """Issue 12 item 6: the consent page's answer, edited so that the authorization fails, goes back
    to the client as an error and leaves no consent behind for a later `prompt=none`."""
    client.force_login(alice)
    form = consent_form(client.get(authorize_path(application, pkce())))

    refused = client.post(AUTHORIZE_URL, {**form, **tampered, "allow": "true"})

    assert refused.status_code == 302
    assert refused["Location"].startswith(REDIRECT_URI + "?")
    assert query_of(refused["Location"])["error"] == error
    assert "code" not in query_of(refused["Location"])
    assert not Consent.objects.exists()
    assert granted_events() == []
    assert get_grant_model().objects.count() == 0
    silent = client.get(authorize_path(application, pkce(), prompt="none"))
    assert query_of(silent["Location"])["error"] == "consent_required"
