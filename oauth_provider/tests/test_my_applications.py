"""The applications a user authorized: `/api/v1/users/me/applications/` and `/accounts/applications/`
(docs/decisions/0014-oauth-authorize-and-consent.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEvent
from oauth_provider.models import Application, Consent
from oauth_provider.tests.browser import (
    ALL_SCOPES,
    allow,
    authorize_path,
    code_from,
    member,
    oauth_client,
    pkce,
    redeem,
    tokens_for,
    userinfo,
)

pytestmark = pytest.mark.django_db

LIST_URL = "/api/v1/users/me/applications/"
PAGE_URL = "/accounts/applications/"


def detail_url(application: Application) -> str:
    return f"{LIST_URL}{application.client_id}/"


def revoke_url(application: Application) -> str:
    return f"{PAGE_URL}{application.client_id}/revoke/"


def as_json(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def alice() -> User:
    return member(username="alice")


@pytest.fixture
def browser(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def printer() -> Application:
    application = oauth_client(name="Photo printer")
    Application.objects.filter(pk=application.pk).update(
        logo_uri="https://printer.example.com/logo.png", client_uri="https://printer.example.com/"
    )
    application.refresh_from_db()
    return application


@pytest.fixture
def calendar() -> Application:
    return oauth_client(name="Calendar")


def consent_to(browser: Client, application: Application, scope: str = "openid") -> dict[str, Any]:
    """Consent on the page and redeem the code: the application's tokens."""
    challenge = pkce()
    code = code_from(allow(browser, browser.get(authorize_path(application, challenge, scope=scope))))
    return redeem(Client(), application, code, challenge)


def api_as(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def bearer(access_token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token}")
    return client


# --- the API --------------------------------------------------------------------------------------


def test_the_list_shows_each_authorized_application_newest_first(
    alice: User, browser: Client, printer: Application, calendar: Application
) -> None:
    consent_to(browser, printer, "openid profile email")
    consent_to(browser, calendar)
    get_access_token_model().objects.filter(application=printer).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    get_access_token_model().objects.filter(application=calendar).delete()  # signed out of it

    response = api_as(alice).get(LIST_URL)

    assert response.status_code == 200
    printer_consent = Consent.objects.get(application=printer)
    calendar_consent = Consent.objects.get(application=calendar)
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            {
                "client_id": calendar.client_id,
                "name": "Calendar",
                "logo_uri": "",
                "client_uri": "",
                "scopes": ["openid"],
                "first_authorized_at": as_json(calendar_consent.created_at),
                "last_authorized_at": as_json(calendar_consent.last_authorized_at),
                "has_active_tokens": False,
            },
            {
                "client_id": printer.client_id,
                "name": "Photo printer",
                "logo_uri": "https://printer.example.com/logo.png",
                "client_uri": "https://printer.example.com/",
                "scopes": ["email", "openid", "profile"],
                "first_authorized_at": as_json(printer_consent.created_at),
                "last_authorized_at": as_json(printer_consent.last_authorized_at),
                "has_active_tokens": True,  # its access token expired, its refresh token works
            },
        ],
    }


def test_has_active_tokens_is_false_once_the_refresh_token_is_revoked_and_the_access_token_expired(
    alice: User, browser: Client, printer: Application
) -> None:
    consent_to(browser, printer)
    get_refresh_token_model().objects.filter(application=printer).update(revoked=timezone.now())
    get_access_token_model().objects.filter(application=printer).update(
        expires=timezone.now() - timedelta(seconds=1)
    )

    [item] = api_as(alice).get(LIST_URL).json()["results"]

    assert item["has_active_tokens"] is False


def test_the_list_is_paginated(alice: User, browser: Client) -> None:
    for number in range(3):
        consent_to(browser, oauth_client(name=f"App {number}"))

    first = api_as(alice).get(LIST_URL, {"page_size": 2}).json()
    second = api_as(alice).get(LIST_URL, {"page_size": 2, "page": 2}).json()

    assert (first["count"], len(first["results"]), first["next"] is not None) == (3, 2, True)
    assert [item["name"] for item in first["results"] + second["results"]] == ["App 2", "App 1", "App 0"]


def test_the_list_holds_only_the_callers_live_consents(
    alice: User, browser: Client, printer: Application, calendar: Application
) -> None:
    consent_to(browser, printer)
    bob = Client()
    bob.force_login(member(username="bob"))
    consent_to(bob, calendar)
    consent_to(browser, calendar)
    api_as(alice).delete(detail_url(calendar))

    results = api_as(alice).get(LIST_URL).json()["results"]

    assert [item["client_id"] for item in results] == [printer.client_id]


def test_deleting_revokes_the_consent_and_the_applications_tokens(
    alice: User, browser: Client, printer: Application, calendar: Application
) -> None:
    tokens = consent_to(browser, printer, "openid email")
    kept = consent_to(browser, calendar)
    assert userinfo(tokens["access_token"]).status_code == 200

    response = api_as(alice).delete(detail_url(printer))

    assert response.status_code == 204
    assert userinfo(tokens["access_token"]).status_code == 401
    assert userinfo(kept["access_token"]).status_code == 200
    assert Consent.objects.get(application=printer).revoked_at is not None
    assert [item["client_id"] for item in api_as(alice).get(LIST_URL).json()["results"]] == [
        calendar.client_id
    ]
    [event] = AuditEvent.objects.filter(action="oauth.consent.revoked")
    assert (event.actor_id, event.metadata) == (
        str(alice.pk),
        {"client_id": printer.client_id, "scopes": ["email", "openid"]},
    )
    # The application must ask again.
    assert browser.get(authorize_path(printer, pkce())).status_code == 200


@pytest.mark.parametrize("client_id", ["no-such-client", "calendar"])
def test_deleting_an_application_not_authorized_is_a_404_and_changes_nothing(
    alice: User, browser: Client, printer: Application, calendar: Application, client_id: str
) -> None:
    tokens = consent_to(browser, printer)
    target = calendar.client_id if client_id == "calendar" else client_id

    response = api_as(alice).delete(f"{LIST_URL}{target}/")

    assert response.status_code == 404
    assert response.json() == {
        "type": "client_error",
        "errors": [
            {"code": "not_found", "detail": "You have not authorized this application.", "attr": None}
        ],
    }
    assert userinfo(tokens["access_token"]).status_code == 200
    assert not AuditEvent.objects.filter(action="oauth.consent.revoked").exists()


def test_another_users_consent_cannot_be_revoked(alice: User, browser: Client, printer: Application) -> None:
    tokens = consent_to(browser, printer)

    response = api_as(member(username="mallory")).delete(detail_url(printer))

    assert response.status_code == 404
    assert Consent.objects.live().get().user == alice
    assert userinfo(tokens["access_token"]).status_code == 200


def test_a_third_party_applications_token_can_neither_list_nor_revoke_whatever_its_scopes(
    alice: User, browser: Client, calendar: Application
) -> None:
    consent_to(browser, calendar)
    nosy = oauth_client(name="Nosy app", allowed_scopes=f"{ALL_SCOPES} users:read users:write")
    tokens = consent_to(browser, nosy, "openid users:read users:write")

    listed = bearer(tokens["access_token"]).get(LIST_URL)
    revoked = bearer(tokens["access_token"]).delete(detail_url(calendar))

    assert listed.status_code == 403
    assert revoked.status_code == 403
    assert revoked.json()["errors"][0]["code"] == "permission_denied"
    assert Consent.objects.live().count() == 2
    assert not AuditEvent.objects.filter(action="oauth.consent.revoked").exists()


def test_an_oauth_token_without_the_scope_is_refused(
    alice: User, browser: Client, printer: Application
) -> None:
    tokens = consent_to(browser, printer)

    response = bearer(tokens["access_token"]).get(LIST_URL)

    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "insufficient_scope"


def test_a_trusted_first_party_applications_token_may_list(alice: User, browser: Client) -> None:
    ours = oauth_client(name="Our own app", trusted=True, allowed_scopes=f"{ALL_SCOPES} users:read")
    tokens = tokens_for(browser, ours, scope="openid users:read")

    response = bearer(tokens["access_token"]).get(LIST_URL)

    assert response.status_code == 200
    assert [item["client_id"] for item in response.json()["results"]] == [ours.client_id]


def test_anonymous_callers_get_401() -> None:
    assert APIClient().get(LIST_URL).status_code == 401
    assert APIClient().delete(f"{LIST_URL}some-client/").status_code == 401


# --- the page --------------------------------------------------------------------------------------


def test_the_page_needs_a_sign_in() -> None:
    response = Client().get(PAGE_URL)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={PAGE_URL}"


def test_the_page_lists_the_applications_with_a_revoke_button(
    browser: Client, printer: Application, calendar: Application
) -> None:
    consent_to(browser, printer, "openid email")

    page = browser.get(PAGE_URL)

    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-client-id="{printer.client_id}"' in html
    assert f'data-client-id="{calendar.client_id}"' not in html
    assert '<a href="https://printer.example.com/" rel="noopener noreferrer">Photo printer</a>' in html
    assert "<li>See your e-mail address</li>" in html
    assert f'<form method="post" action="{revoke_url(printer)}">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "<script" not in html
    assert "img-src 'self' data: blob: https://printer.example.com" in page["Content-Security-Policy"]


def test_the_page_says_when_nothing_is_authorized(browser: Client) -> None:
    assert "You have not authorized any application." in browser.get(PAGE_URL).content.decode()


def test_the_revoke_button_signs_the_application_out(
    alice: User, browser: Client, printer: Application
) -> None:
    tokens = consent_to(browser, printer)

    response = browser.post(revoke_url(printer))

    assert response.status_code == 302
    assert response["Location"] == PAGE_URL
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "Photo printer can no longer use your account."
    ]
    assert userinfo(tokens["access_token"]).status_code == 401
    assert not Consent.objects.live().exists()
    assert AuditEvent.objects.filter(action="oauth.consent.revoked", actor_id=str(alice.pk)).count() == 1


def test_the_revoke_button_needs_the_csrf_token(alice: User, printer: Application) -> None:
    plain = Client()
    plain.force_login(alice)
    tokens = consent_to(plain, printer)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    response = browser.post(revoke_url(printer))

    assert response.status_code == 403
    assert Consent.objects.live().count() == 1
    assert userinfo(tokens["access_token"]).status_code == 200


def test_revoking_by_get_is_not_allowed(browser: Client, printer: Application) -> None:
    consent_to(browser, printer)

    assert browser.get(revoke_url(printer)).status_code == 405
    assert Consent.objects.live().count() == 1


def test_revoking_an_application_not_authorized_is_a_404(browser: Client, printer: Application) -> None:
    assert browser.post(revoke_url(printer)).status_code == 404
    assert browser.post(f"{PAGE_URL}no-such-client/revoke/").status_code == 404
