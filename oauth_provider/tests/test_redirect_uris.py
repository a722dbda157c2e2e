"""The redirect-URI policy (oauth_provider/redirect_uris.py) wherever a client is created or changed:
the service, the admin's form and dynamic client registration, with the same codes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from accounts.models import Role
from audit.models import AuditEvent
from oauth_provider.models import Application
from oauth_provider.redirect_uris import redirect_uri_is_allowed
from oauth_provider.services import application_create, application_update
from oauth_provider.tests.test_registration import NATIVE_CLIENT, initial_token, person, register

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/oauth_provider/application/add/"

ACCEPTED = [
    "https://client.example/callback",
    "https://client.example:8443/oauth/cb?tenant=7",
    "https://10.1.2.3/cb",
    "http://127.0.0.1:8765/callback",  # the embedded default's demo client
    "http://127.0.0.1/callback",
    "http://[::1]:51000/cb",
    "http://localhost:3000/callback",
    "com.example.notes:/oauth2redirect",
    "com.example.notes://callback",
]
REFUSED = [
    ("http://client.example/callback", "redirect_uri_not_https"),
    ("http://127.0.0.2:8765/callback", "redirect_uri_not_https"),
    ("http://192.168.1.10/cb", "redirect_uri_not_https"),
    ("https://*.client.example/callback", "redirect_uri_wildcard"),
    ("https://client.example/callback/*", "redirect_uri_wildcard"),
    ("https://client.example/callback#done", "redirect_uri_fragment"),
    ("https://client.example/callback#", "redirect_uri_fragment"),
    ("/callback", "redirect_uri_not_absolute"),
    ("client.example/callback", "redirect_uri_not_absolute"),
    ("HTTPS://client.example/callback", "redirect_uri_not_absolute"),
    ("javascript:alert(1)", "redirect_uri_scheme_forbidden"),
    ("data:text/html,hello", "redirect_uri_scheme_forbidden"),
    ("file:///etc/passwd", "redirect_uri_scheme_forbidden"),
    ("ftp://files.example/cb", "redirect_uri_scheme_forbidden"),
    ("notes:/callback", "redirect_uri_private_scheme"),
    ("https://user:secret@client.example/cb", "redirect_uri_userinfo"),
    ("https:/client.example/cb", "redirect_uri_invalid"),
    ("https://client.example:99999/cb", "redirect_uri_invalid"),
    ("com.example.notes:", "redirect_uri_invalid"),
    ("https://client.example/" + "a" * 2000, "redirect_uri_too_long"),
]


def codes(error: ValidationError, field: str = "redirect_uris") -> list[str | None]:
    return [item.code for item in error.error_dict[field]]


def create(redirect_uris: str, **fields: Any) -> Application:
    return application_create(name="Notes", owner=None, redirect_uris=redirect_uris, **fields).application


# --- the service ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ACCEPTED)
def test_the_service_accepts_allowed_redirect_uris(uri: str) -> None:
    application = create(uri)

    assert Application.objects.get(pk=application.pk).redirect_uris == uri
    assert redirect_uri_is_allowed(uri)


@pytest.mark.parametrize(("uri", "code"), REFUSED)
def test_the_service_refuses_redirect_uris_against_the_policy(uri: str, code: str) -> None:
    with pytest.raises(ValidationError) as refused:
        create(uri)

    assert codes(refused.value) == [code]
    assert not redirect_uri_is_allowed(uri)
    assert Application.objects.count() == 0
    assert not AuditEvent.objects.filter(action="oauth.client.created").exists()


def test_every_refused_uri_of_a_list_is_reported() -> None:
    with pytest.raises(ValidationError) as refused:
        create("https://ok.example/cb http://bad.example/cb https://ok.example/cb https://x.example/#")

    assert codes(refused.value) == [
        "redirect_uri_not_https",
        "redirect_uri_duplicate",
        "redirect_uri_fragment",
    ]
    assert refused.value.error_dict["redirect_uris"][0].messages == [
        "Redirect URI http://bad.example/cb must use https: plain http is allowed only on the loopback "
        "addresses 127.0.0.1 and [::1] and localhost."
    ]


def test_at_most_twenty_redirect_uris() -> None:
    with pytest.raises(ValidationError) as refused:
        create(" ".join(f"https://client.example/cb{number}" for number in range(21)))

    assert codes(refused.value) == ["redirect_uris_too_many"]


def test_localhost_can_be_turned_off(settings: Any) -> None:
    settings.OAUTH_REDIRECT_URI_ALLOW_LOCALHOST = False

    with pytest.raises(ValidationError) as refused:
        create("http://localhost:3000/callback")

    assert codes(refused.value) == ["redirect_uri_localhost"]
    assert create("http://127.0.0.1:3000/callback").redirect_uris == "http://127.0.0.1:3000/callback"


def test_the_authorization_code_grant_needs_a_redirect_uri() -> None:
    with pytest.raises(ValidationError) as refused:
        create("")

    assert codes(refused.value) == ["redirect_uris_required"]
    machine = create("", authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
    assert machine.redirect_uris == ""


def test_post_logout_redirect_uris_follow_the_same_policy() -> None:
    with pytest.raises(ValidationError) as refused:
        create(ACCEPTED[0], metadata={"post_logout_redirect_uris": "http://client.example/bye"})

    assert codes(refused.value, "post_logout_redirect_uris") == ["redirect_uri_not_https"]


def test_an_update_is_checked_too_and_changes_nothing_when_refused() -> None:
    application = create(ACCEPTED[0])

    with pytest.raises(ValidationError) as refused:
        application_update(
            application=application,
            changes={"redirect_uris": "https://*.client.example/cb", "name": "Renamed"},
            actor=None,
        )

    assert codes(refused.value) == ["redirect_uri_wildcard"]
    stored = Application.objects.get(pk=application.pk)
    assert (stored.redirect_uris, stored.name) == (ACCEPTED[0], "Notes")
    assert not AuditEvent.objects.filter(action="oauth.client.updated").exists()


@pytest.mark.parametrize(
    "grant", [Application.GRANT_IMPLICIT, Application.GRANT_PASSWORD, Application.GRANT_OPENID_HYBRID]
)
def test_the_grants_rfc_9700_retires_are_refused(grant: str) -> None:
    with pytest.raises(ValidationError) as refused:
        create(ACCEPTED[0], authorization_grant_type=grant)

    assert codes(refused.value, "authorization_grant_type") == ["grant_type_forbidden"]


def test_a_redirect_may_use_the_schemes_of_the_client_s_own_uris() -> None:
    application = create("https://a.example/cb http://127.0.0.1:9000/cb com.example.notes:/cb")

    assert application.get_allowed_schemes() == ["https", "com.example.notes", "http"]
    assert create("https://b.example/cb").get_allowed_schemes() == ["https"]


def test_the_demo_client_of_the_embedded_default_stays_valid(tmp_path: Path) -> None:
    call_command("demo_setup", credentials_file=str(tmp_path / "demo.json"), stdout=io.StringIO())

    demo = Application.objects.get(client_id="demo-client")
    assert demo.redirect_uris == "http://127.0.0.1:8765/callback"
    demo.full_clean()


# --- the admin's form ----------------------------------------------------------------------------------


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(person("root", Role.ADMIN))
    return client


def add_form(redirect_uris: str) -> dict[str, Any]:
    return {
        "name": "Notes",
        "client_type": Application.CLIENT_PUBLIC,
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "user": "",
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": "",
        "allowed_origins": "",
        "allowed_scopes": ["openid"],
        "require_pkce": "on",
        "client_uri": "",
        "logo_uri": "",
        "policy_uri": "",
        "tos_uri": "",
        "contacts": "",
        "software_id": "",
        "software_version": "",
    }


@pytest.mark.parametrize("uri", ["http://127.0.0.1:8765/callback", "com.example.notes:/oauth2redirect"])
def test_the_admin_form_accepts_allowed_redirect_uris(admin_client: Client, uri: str) -> None:
    response = admin_client.post(ADD_URL, add_form(uri))

    assert response.status_code == 302
    assert Application.objects.get().redirect_uris == uri


@pytest.mark.parametrize(("uri", "code"), REFUSED)
def test_the_admin_form_refuses_redirect_uris_with_the_policy_s_reason(
    admin_client: Client, uri: str, code: str
) -> None:
    response = admin_client.post(ADD_URL, add_form(uri))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.as_data()
    assert [error.code for error in errors["redirect_uris"]] == [code]
    assert Application.objects.count() == 0


def test_the_admin_form_takes_one_uri_per_line(admin_client: Client) -> None:
    response = admin_client.post(ADD_URL, add_form("https://a.example/cb\r\nhttp://[::1]:8000/cb\r\n"))

    assert response.status_code == 302
    assert Application.objects.get().redirect_uris == "https://a.example/cb http://[::1]:8000/cb"


# --- dynamic client registration ---------------------------------------------------------------------


@pytest.mark.parametrize("uri", ACCEPTED)
def test_registration_accepts_allowed_redirect_uris(client: Client, uri: str) -> None:
    response = register(client, {**NATIVE_CLIENT, "redirect_uris": [uri]}, token=initial_token())

    assert response.status_code == 201
    assert response.json()["redirect_uris"] == [uri]


@pytest.mark.parametrize(("uri", "code"), [*REFUSED, ("https://client.example/a b", "redirect_uri_invalid")])
def test_registration_refuses_redirect_uris_with_invalid_redirect_uri(
    client: Client, uri: str, code: str
) -> None:
    response = register(client, {**NATIVE_CLIENT, "redirect_uris": [uri]}, token=initial_token())

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_redirect_uri"
    assert [(error["attr"], error["code"]) for error in body["errors"]] == [("redirect_uris", code)]
    assert Application.objects.count() == 0
