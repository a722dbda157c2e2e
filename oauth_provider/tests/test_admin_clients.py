"""OAuth clients and initial access tokens in the Django admin: lists, search and filters in a
constant number of queries, the forms through the services, secrets shown once, secret rotation
behind step-up, and the policies (admins change, moderators look)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Role, User
from accounts.tests.factories import UserFactory, mark_reauthenticated, totp_enrol
from audit.models import AuditEvent
from oauth_provider.models import Application, InitialAccessToken
from oauth_provider.services import application_create
from oauth_provider.services.registration import initial_access_token_issue
from oauth_provider.tests.test_registration import NATIVE_CLIENT, person, register

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "/admin/oauth_provider/application/"
ADD_URL = f"{CHANGELIST_URL}add/"
TOKENS_URL = "/admin/oauth_provider/initialaccesstoken/"
REDIRECT_URI = "https://printer.example/callback"


@pytest.fixture
def admin() -> User:
    return person("root", Role.ADMIN)


@pytest.fixture
def moderator() -> User:
    return person("mod", Role.MODERATOR)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin: User) -> Client:
    return signed_in(admin)


@pytest.fixture
def moderator_client(moderator: User) -> Client:
    return signed_in(moderator)


def client_app(name: str = "Photo printer", **fields: Any) -> Application:
    return application_create(
        name=name, owner=fields.pop("owner", None), redirect_uris=REDIRECT_URI, **fields
    ).application


def change_url(application: Application) -> str:
    return f"{CHANGELIST_URL}{application.pk}/change/"


def rotate_url(application: Application) -> str:
    return f"{CHANGELIST_URL}{application.pk}/rotate-secret/"


def listed_names(response: Any) -> list[str]:
    return [str(application) for application in response.context["cl"].result_list]


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def form_data(application: Application | None = None, **changes: Any) -> dict[str, Any]:
    """The add or change form as the browser posts it, with `changes`."""
    data: dict[str, Any] = {
        "name": "Photo printer",
        "client_type": Application.CLIENT_CONFIDENTIAL,
        "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
        "user": "",
        "redirect_uris": REDIRECT_URI,
        "post_logout_redirect_uris": "",
        "allowed_origins": "",
        "allowed_scopes": ["openid", "email"],
        "require_pkce": "on",
        "client_uri": "https://printer.example/",
        "logo_uri": "https://cdn.printer.example/logo.png",
        "policy_uri": "",
        "tos_uri": "",
        "contacts": "ops@printer.example",
        "software_id": "",
        "software_version": "",
    }
    if application is not None:
        data.update(
            name=application.name,
            client_type=application.client_type,
            authorization_grant_type=application.authorization_grant_type,
            user=str(application.user_id or ""),
            redirect_uris="\n".join(application.redirect_uris.split()),
            allowed_scopes=application.allowed_scopes.split(),
            require_pkce="on" if application.require_pkce else "",
            client_uri=application.client_uri,
            logo_uri=application.logo_uri,
            contacts="\n".join(application.contacts),
        )
        if application.skip_authorization:
            data["skip_authorization"] = "on"
    data.update(changes)
    if not data["require_pkce"]:
        del data["require_pkce"]  # an unticked checkbox is not posted
    return data


def shown_secret(response: Any) -> str:
    match = re.search(r'<code id="client-secret"[^>]*>([^<]+)</code>', response.content.decode())
    assert match is not None, response.content.decode()[:3000]
    return match.group(1)


# --- the list ----------------------------------------------------------------------------------------


def test_staff_list_clients_with_their_columns(admin_client: Client, admin: User) -> None:
    client_app("Photo printer", owner=admin, skip_authorization=True)
    client_app("Notes", client_type=Application.CLIENT_PUBLIC)

    response = admin_client.get(CHANGELIST_URL)

    assert response.status_code == 200
    assert listed_names(response) == ["Notes", "Photo printer"]
    assert list(response.context["cl"].list_display) == [
        "name",
        "client_id",
        "client_type",
        "authorization_grant_type",
        "trusted",
        "owner",
        "registration_source",
        "created",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("printer", ["Photo printer"]),
        ("demo-client-id", ["Notes"]),
        ("carol", ["Photo printer"]),
        ("carol@example", ["Photo printer"]),
        ("nothing", []),
    ],
)
def test_search_by_name_client_id_and_owner(admin_client: Client, query: str, expected: list[str]) -> None:
    client_app("Photo printer", owner=UserFactory.create(username="carol"))
    client_app("Notes", client_id="demo-client-id")

    response = admin_client.get(CHANGELIST_URL, {"q": query})

    assert listed_names(response) == expected


def test_filters_by_trust_type_and_source(admin_client: Client) -> None:
    client_app("Trusted", skip_authorization=True)
    client_app("Public", client_type=Application.CLIENT_PUBLIC)
    register(Client(), NATIVE_CLIENT, token=initial_access_token_issue(label="x", created_by=None).token)

    assert listed_names(admin_client.get(CHANGELIST_URL, {"skip_authorization__exact": "1"})) == ["Trusted"]
    assert listed_names(admin_client.get(CHANGELIST_URL, {"client_type__exact": "public"})) == [
        "Notes CLI",
        "Public",
    ]
    assert listed_names(admin_client.get(CHANGELIST_URL, {"registration_source__exact": "dcr"})) == [
        "Notes CLI"
    ]


def changelist_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(CHANGELIST_URL).status_code == 200
    return len(queries)


def test_the_list_costs_the_same_queries_for_5_or_50_clients(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    owners = UserFactory.create_batch(5)
    for number in range(5):
        client_app(f"Client {number}", owner=owners[number])
    five = changelist_queries(admin_client)
    for number in range(5, 50):
        client_app(f"Client {number}", owner=owners[number % 5], skip_authorization=number % 2 == 0)

    with django_assert_max_num_queries(five):
        response = admin_client.get(CHANGELIST_URL)

    assert len(response.context["cl"].result_list) == 50


# --- adding and changing -----------------------------------------------------------------------------


def test_an_admin_adds_a_client_and_sees_its_secret_once(admin_client: Client, admin: User) -> None:
    response = admin_client.post(ADD_URL, form_data(skip_authorization="on"))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    application = Application.objects.get()
    secret = shown_secret(response)
    assert check_password(secret, application.client_secret)
    assert (application.name, application.skip_authorization, application.allowed_scopes) == (
        "Photo printer",
        True,
        "openid email",
    )
    assert (application.contacts, application.algorithm) == (["ops@printer.example"], "RS256")
    [created] = AuditEvent.objects.filter(action="oauth.client.created")
    assert (created.actor_id, created.target_id) == (str(admin.pk), str(application.pk))
    assert created.metadata == {
        "client_id": application.client_id,
        "client_name": "Photo printer",
        "client_type": "confidential",
        "grant_type": "authorization-code",
        "trusted": True,
    }
    assert AuditEvent.objects.filter(action="admin.object.added").count() == 1
    for event in AuditEvent.objects.all():
        assert secret not in str(event.metadata) + str(event.changes)
    page = admin_client.get(change_url(application)).content.decode()
    assert secret not in page
    assert application.client_secret not in page


def test_a_public_client_is_added_without_a_secret_page(admin_client: Client) -> None:
    response = admin_client.post(ADD_URL, form_data(client_type=Application.CLIENT_PUBLIC))

    assert response.status_code == 302
    assert Application.objects.get().client_type == Application.CLIENT_PUBLIC


def test_the_add_form_offers_no_implicit_or_password_grant(admin_client: Client) -> None:
    response = admin_client.post(ADD_URL, form_data(authorization_grant_type=Application.GRANT_PASSWORD))

    assert response.status_code == 200
    assert "authorization_grant_type" in response.context["adminform"].form.errors
    assert Application.objects.count() == 0


def test_a_public_client_must_use_pkce(admin_client: Client) -> None:
    data = form_data(client_type=Application.CLIENT_PUBLIC)
    del data["require_pkce"]

    response = admin_client.post(ADD_URL, data)

    errors = response.context["adminform"].form.errors.as_data()
    assert [error.code for error in errors["require_pkce"]] == ["pkce_required_for_public_clients"]
    assert Application.objects.count() == 0


def test_an_admin_changes_a_client_through_the_service(admin_client: Client, admin: User) -> None:
    application = client_app()

    response = admin_client.post(
        change_url(application),
        form_data(
            application, redirect_uris=f"{REDIRECT_URI}\r\nhttp://127.0.0.1/cb", allowed_scopes=["openid"]
        ),
    )

    assert response.status_code == 302
    stored = Application.objects.get()
    assert (stored.redirect_uris, stored.allowed_scopes) == (f"{REDIRECT_URI} http://127.0.0.1/cb", "openid")
    [updated] = AuditEvent.objects.filter(action="oauth.client.updated")
    assert updated.actor_id == str(admin.pk)
    assert updated.changes == {
        "redirect_uris": [REDIRECT_URI, f"{REDIRECT_URI} http://127.0.0.1/cb"],
        "allowed_scopes": ["", "openid"],
    }
    assert updated.metadata["via"] == "admin"
    assert AuditEvent.objects.filter(action="admin.object.changed").count() == 1


def test_the_change_page_previews_the_logo_from_its_origin_only(admin_client: Client) -> None:
    application = client_app(metadata={"logo_uri": "https://cdn.printer.example/logo.png"})

    response = admin_client.get(change_url(application))

    assert '<img src="https://cdn.printer.example/logo.png"' in response.content.decode()
    policy = response["Content-Security-Policy"]
    img_src = next(part for part in policy.split(";") if part.strip().startswith("img-src"))
    assert "https://cdn.printer.example" in img_src
    assert "https:" not in img_src.replace("https://cdn.printer.example", "")


def test_an_admin_deletes_a_client_through_the_service(admin_client: Client, admin: User) -> None:
    application = client_app()

    response = admin_client.post(f"{CHANGELIST_URL}{application.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert Application.objects.count() == 0
    [deleted] = AuditEvent.objects.filter(action="oauth.client.deleted")
    assert (deleted.actor_id, deleted.metadata["client_id"], deleted.metadata["via"]) == (
        str(admin.pk),
        application.client_id,
        "admin",
    )


# --- moderators look, admins change ----------------------------------------------------------------------


def test_moderators_see_clients_but_change_nothing(moderator_client: Client) -> None:
    application = client_app()
    before = Application.objects.values().get()

    assert moderator_client.get(CHANGELIST_URL).status_code == 200
    page = moderator_client.get(change_url(application))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert (
        moderator_client.post(change_url(application), form_data(application, name="Hacked")).status_code
        == 403
    )
    assert moderator_client.get(ADD_URL).status_code == 403
    assert (
        moderator_client.post(f"{CHANGELIST_URL}{application.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    mark_reauthenticated(moderator_client)
    assert moderator_client.post(rotate_url(application)).status_code == 403
    assert Application.objects.values().get() == before


def test_staff_without_a_staff_role_do_not_reach_the_client_admin() -> None:
    user = UserFactory.create(is_staff=True)  # the flag alone, set by hand: no role, no policy
    totp_enrol(user)
    client = signed_in(user)
    application = client_app()

    assert client.get(CHANGELIST_URL).status_code == 403
    assert client.get(change_url(application)).status_code == 403
    assert client.get(TOKENS_URL).status_code == 403


# --- rotating the secret ------------------------------------------------------------------------------


def test_rotating_a_secret_without_step_up_sends_the_admin_to_re_authenticate(admin_client: Client) -> None:
    issued = application_create(name="Photo printer", owner=None, redirect_uris=REDIRECT_URI)
    stored_hash = issued.application.client_secret

    response = admin_client.post(rotate_url(issued.application))

    assert response.status_code == 302
    back_to = f"%2Fadmin%2Foauth_provider%2Fapplication%2F{issued.application.pk}%2Frotate-secret%2F"
    assert response["Location"] == f"/accounts/reauthenticate/?next={back_to}"
    assert messages_of(response) == [
        "Rotating a client secret needs you to confirm who you are again. Nothing changed yet: "
        "re-authenticate, then rotate it again."
    ]
    assert Application.objects.get().client_secret == stored_hash
    assert check_password(issued.client_secret, Application.objects.get().client_secret)
    assert not AuditEvent.objects.filter(action="oauth.client.secret_rotated").exists()


def test_rotating_a_secret_after_step_up_shows_the_new_one_once(admin_client: Client, admin: User) -> None:
    issued = application_create(name="Photo printer", owner=None, redirect_uris=REDIRECT_URI)
    assert admin_client.get(change_url(issued.application)).content.decode().count("rotate-secret/") == 1
    confirmation = admin_client.get(rotate_url(issued.application))
    assert confirmation.status_code == 200
    assert "stops working at once" in confirmation.content.decode()
    mark_reauthenticated(admin_client)

    response = admin_client.post(rotate_url(issued.application))

    assert response.status_code == 200
    new_secret = shown_secret(response)
    stored = Application.objects.get()
    assert check_password(new_secret, stored.client_secret)
    assert not check_password(issued.client_secret, stored.client_secret)
    [rotated] = AuditEvent.objects.filter(action="oauth.client.secret_rotated")
    assert (rotated.actor_id, rotated.target_id) == (str(admin.pk), str(stored.pk))
    assert rotated.metadata == {"client_id": stored.client_id, "client_name": "Photo printer"}
    assert new_secret not in str(rotated.metadata)


def test_a_public_client_has_no_secret_to_rotate(admin_client: Client) -> None:
    application = client_app(client_type=Application.CLIENT_PUBLIC)
    mark_reauthenticated(admin_client)

    response = admin_client.post(rotate_url(application))

    assert response.status_code == 302
    assert messages_of(response) == ["A public client has no secret to rotate."]
    assert not AuditEvent.objects.filter(action="oauth.client.secret_rotated").exists()
    assert "rotate-secret/" not in admin_client.get(change_url(application)).content.decode()


# --- initial access tokens -------------------------------------------------------------------------------


def test_an_admin_issues_an_initial_access_token_and_sees_it_once(admin_client: Client, admin: User) -> None:
    form = admin_client.get(f"{TOKENS_URL}add/")
    expires_at = form.context["adminform"].form.initial["expires_at"]

    response = admin_client.post(
        f"{TOKENS_URL}add/",
        {
            "label": "MCP partners",
            "expires_at_0": expires_at.strftime("%Y-%m-%d"),
            "expires_at_1": expires_at.strftime("%H:%M:%S"),
            "max_uses": "2",
            "allowed_scopes": ["openid", "profile"],
            "allowed_grant_types": ["authorization_code", "refresh_token"],
        },
    )

    assert response.status_code == 200
    match = re.search(r'<code id="initial-access-token"[^>]*>([^<]+)</code>', response.content.decode())
    assert match is not None
    value = match.group(1)
    token = InitialAccessToken.objects.get()
    assert token.token_checksum == hashlib.sha256(value.encode()).hexdigest()
    assert (token.label, token.max_uses, token.allowed_scopes, token.created_by) == (
        "MCP partners",
        2,
        "openid profile",
        admin,
    )
    listing = admin_client.get(TOKENS_URL).content.decode()
    assert f"{token.token_prefix}…" in listing
    assert value not in listing
    assert register(Client(), {**NATIVE_CLIENT, "scope": "openid"}, token=value).status_code == 201
    [issued] = AuditEvent.objects.filter(action="oauth.initial_access.issued")
    assert issued.actor_id == str(admin.pk)
    assert value not in str(issued.metadata)


def test_an_admin_revokes_initial_access_tokens(admin_client: Client, admin: User) -> None:
    value = initial_access_token_issue(label="Old", created_by=admin).token
    token = InitialAccessToken.objects.get()

    response = admin_client.post(
        TOKENS_URL, {"action": "revoke_selected", "_selected_action": [str(token.pk)]}
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.revoked_by, token.state) == (admin, "revoked")
    assert register(Client(), NATIVE_CLIENT, token=value).status_code == 401
    assert (
        AuditEvent.objects.filter(action="oauth.initial_access.revoked", actor_id=str(admin.pk)).count() == 1
    )


def test_moderators_list_initial_access_tokens_but_issue_or_revoke_none(
    moderator_client: Client, admin: User
) -> None:
    initial_access_token_issue(label="Old", created_by=admin)
    token = InitialAccessToken.objects.get()

    assert moderator_client.get(TOKENS_URL).status_code == 200
    assert moderator_client.get(f"{TOKENS_URL}add/").status_code == 403
    response = moderator_client.post(
        TOKENS_URL, {"action": "revoke_selected", "_selected_action": [str(token.pk)]}
    )
    assert response.status_code == 200  # Django: "No action selected" (not one this user has)
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_token_list_filters_by_state(admin_client: Client, admin: User) -> None:
    initial_access_token_issue(label="Live", created_by=admin)
    used = initial_access_token_issue(label="Used", created_by=admin, max_uses=1).token
    register(Client(), NATIVE_CLIENT, token=used)

    def labels(state: str) -> list[str]:
        return [
            token.label for token in admin_client.get(TOKENS_URL, {"state": state}).context["cl"].result_list
        ]

    assert labels("active") == ["Live"]
    assert labels("used_up") == ["Used"]
    assert labels("revoked") == []
