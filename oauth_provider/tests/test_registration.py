"""Dynamic client registration over HTTP: RFC 7591 at /o/register/ behind an initial access token
or a staff session, the registration policy, RFC 7592 management with the registration access
token, and a registered client signing a user in (docs/decisions/0016)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.hashers import check_password
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Role, User
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import UserFactory, totp_enrol
from audit.models import AuditEvent
from oauth_provider.models import Application, ClientRegistration, InitialAccessToken
from oauth_provider.services import application_update
from oauth_provider.services.registration import (
    InitialAccessTokenUnusable,
    client_register,
    initial_access_token_issue,
    initial_access_token_revoke,
)
from oauth_provider.tests.browser import pkce

pytestmark = pytest.mark.django_db

REGISTER_URL = "/o/register/"
SITE_URL = "http://127.0.0.1:8000"  # the test settings' default
NATIVE_REDIRECT_URI = "http://127.0.0.1:53682/callback"
WEB_REDIRECT_URI = "https://printer.example/callback"
NATIVE_CLIENT: dict[str, Any] = {
    "client_name": "Notes CLI",
    "redirect_uris": [NATIVE_REDIRECT_URI],
    "token_endpoint_auth_method": "none",
    "scope": "openid profile offline_access",
}
WEB_CLIENT: dict[str, Any] = {
    "client_name": "Photo printer",
    "redirect_uris": [WEB_REDIRECT_URI],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic",
    "scope": "openid email",
    "client_uri": "https://printer.example/",
    "logo_uri": "https://printer.example/logo.png",
    "policy_uri": "https://printer.example/privacy",
    "tos_uri": "https://printer.example/terms",
    "contacts": ["ops@printer.example"],
    "software_id": "printer-web",
    "software_version": "2.4.1",
}
CSRF_SECRET = "k" * 32


# --- helpers ---------------------------------------------------------------------------------------


def initial_token(**options: Any) -> str:
    """A fresh initial access token's value (issued as an admin would)."""
    return initial_access_token_issue(label="Partner", created_by=None, **options).token


def token_record(value: str) -> InitialAccessToken:
    return InitialAccessToken.objects.get(token_checksum=hashlib.sha256(value.encode()).hexdigest())


def register(client: Client, metadata: Any, *, token: str | None = None, **headers: str) -> Any:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return client.post(REGISTER_URL, body, content_type="application/json", headers=headers)


def configuration(client: Client, method: str, client_id: str, token: str | None, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    path = f"{REGISTER_URL}{client_id}/"
    if method == "put":
        return client.put(path, json.dumps(body), content_type="application/json", headers=headers)
    return getattr(client, method)(path, headers=headers)


def oauth_error(response: Any) -> dict[str, str]:
    """RFC 7591 §3.2.2's members of an error body (the project's `type` and `errors` come along)."""
    body = response.json()
    return {"error": body["error"], "error_description": body["error_description"]}


def registration_errors(response: Any) -> list[tuple[str | None, str]]:
    return [(error["attr"], error["code"]) for error in response.json()["errors"]]


def person(username: str, *roles: str) -> User:
    user = user_set_roles(user=UserFactory.create(username=username), roles=roles)
    if roles:
        totp_enrol(user)  # staff must have a second factor
    return user


def session_client(user: User, *, csrf: bool = True) -> Client:
    """A browser signed in as `user`, with Django's CSRF checks on (as in production)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    if csrf:
        client.cookies["csrftoken"] = CSRF_SECRET
    return client


def staff_register(client: Client, metadata: Any) -> Any:
    return register(client, metadata, **{"X-CSRFToken": CSRF_SECRET})


def state() -> tuple[int, int, list[str]]:
    """Clients, registrations and OAuth audit actions: what a refused request must leave as it was."""
    actions = list(
        AuditEvent.objects.filter(action__startswith="oauth.client.").values_list("action", flat=True)
    )
    return Application.objects.count(), ClientRegistration.objects.count(), actions


# --- registering with an initial access token --------------------------------------------------------


def test_a_native_app_registers_with_an_initial_access_token(client: Client) -> None:
    token = initial_token()

    response = register(client, NATIVE_CLIENT, token=token)

    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    application = Application.objects.get()
    assert body == {
        "client_id": application.client_id,
        "client_id_issued_at": int(application.created.timestamp()),
        "client_name": "Notes CLI",
        "redirect_uris": [NATIVE_REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid profile offline_access",
        "registration_access_token": body["registration_access_token"],
        "registration_client_uri": f"{SITE_URL}/o/register/{application.client_id}/",
    }
    assert body["registration_access_token"].startswith("rat_")
    assert application.client_type == Application.CLIENT_PUBLIC
    assert (application.registration_source, application.skip_authorization, application.require_pkce) == (
        "dcr",
        False,
        True,
    )
    assert (application.user, application.allowed_scopes) == (None, "openid profile offline_access")
    registration = ClientRegistration.objects.get(application=application)
    assert registration.initial_access_token == token_record(token)
    assert (
        registration.registration_token_checksum
        == hashlib.sha256(body["registration_access_token"].encode()).hexdigest()
    )
    used = token_record(token)
    assert (used.uses, used.last_used_at is not None) == (1, True)
    [event] = AuditEvent.objects.filter(action="oauth.client.registered")
    assert (event.actor_type, event.actor_id, event.target_id) == (
        "client",
        application.client_id,
        str(application.pk),
    )
    assert event.metadata == {
        "client_id": application.client_id,
        "client_name": "Notes CLI",
        "via": "initial_access",
        "initial_access_id": str(used.pk),
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": "openid profile offline_access",
        "redirect_uris": [NATIVE_REDIRECT_URI],
        "client_type": "public",
    }
    assert body["registration_access_token"] not in json.dumps(event.metadata)


def test_a_confidential_client_gets_its_secret_once_and_it_is_stored_hashed(client: Client) -> None:
    response = register(client, WEB_CLIENT, token=initial_token())

    assert response.status_code == 201
    body = response.json()
    application = Application.objects.get()
    assert body["client_secret_expires_at"] == 0
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert check_password(body["client_secret"], application.client_secret)
    assert application.client_secret != body["client_secret"]
    for field in (
        "client_uri",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "contacts",
        "software_id",
        "software_version",
    ):
        assert body[field] == WEB_CLIENT[field]
        assert getattr(application, field) == WEB_CLIENT[field]
    assert (application.name, application.client_type) == ("Photo printer", Application.CLIENT_CONFIDENTIAL)
    [event] = AuditEvent.objects.filter(action="oauth.client.registered")
    assert body["client_secret"] not in json.dumps(event.metadata)


def test_omitted_scope_and_grants_take_the_policy_defaults(client: Client) -> None:
    response = register(client, {"redirect_uris": [WEB_REDIRECT_URI]}, token=initial_token())

    assert response.status_code == 201
    body = response.json()
    assert body["scope"] == "openid profile email offline_access users:read files:read"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"


def test_unknown_metadata_and_software_statements_are_ignored(client: Client) -> None:
    metadata = {
        **NATIVE_CLIENT,
        "software_statement": "eyJ.e30.x",
        "jwks_uri": "https://x.example/jwks",
        "x": 1,
    }

    response = register(client, metadata, token=initial_token())

    assert response.status_code == 201
    assert "software_statement" not in response.json()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, ("access_denied", "Bearer")),
        ({"Authorization": "Bearer iat_not-a-token"}, ("invalid_token", 'Bearer error="invalid_token"')),
        ({"Authorization": "Bearer some-api-token"}, ("invalid_token", 'Bearer error="invalid_token"')),
    ],
)
def test_registration_without_a_valid_credential_is_refused(
    client: Client, headers: dict[str, str], expected: tuple[str, str]
) -> None:
    response = register(client, NATIVE_CLIENT, **headers)

    assert response.status_code == 401
    assert (response.json()["error"], response["WWW-Authenticate"]) == expected
    assert state() == (0, 0, [])


def test_an_expired_initial_access_token_registers_nothing(client: Client) -> None:
    token = initial_token()
    InitialAccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = register(client, NATIVE_CLIENT, token=token)

    assert response.status_code == 401
    assert oauth_error(response) == {
        "error": "invalid_token",
        "error_description": "The initial access token has expired.",
    }
    assert state() == (0, 0, [])
    assert token_record(token).uses == 0


def test_a_revoked_initial_access_token_registers_nothing(client: Client) -> None:
    token = initial_token()
    initial_access_token_revoke(initial_access_token=token_record(token), actor=None)

    response = register(client, NATIVE_CLIENT, token=token)

    assert response.status_code == 401
    assert response.json()["error_description"] == "The initial access token has been revoked."
    assert state() == (0, 0, [])


def test_an_initial_access_token_registers_at_most_max_uses_clients(client: Client) -> None:
    token = initial_token(max_uses=1)

    first = register(client, NATIVE_CLIENT, token=token)
    second = register(client, {**NATIVE_CLIENT, "client_name": "Second"}, token=token)

    assert first.status_code == 201
    assert second.status_code == 401
    assert second.json()["error_description"] == (
        "The initial access token has registered as many clients as it may."
    )
    assert list(Application.objects.values_list("name", flat=True)) == ["Notes CLI"]
    assert token_record(token).uses == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_registrations_with_a_single_use_token_register_one_client(
    require_postgresql: None,
) -> None:
    issued = initial_access_token_issue(label="Once", created_by=None, max_uses=1)
    barrier = threading.Barrier(2)

    def attempt(name: str) -> str:
        barrier.wait()
        try:
            client_register(
                metadata={**NATIVE_CLIENT, "client_name": name},
                initial_access_token=issued.initial_access_token,
            )
        except InitialAccessTokenUnusable:
            return "refused"
        finally:
            connection.close()
        return "registered"

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(attempt, ["First", "Second"]))

    assert outcomes == ["refused", "registered"]
    assert Application.objects.count() == 1
    assert token_record(issued.token).uses == 1


def test_the_request_body_must_be_a_json_object(client: Client) -> None:
    token = initial_token()

    for body in ("not json", "[1, 2]", '"text"'):
        response = register(client, body, token=token)
        assert response.status_code == 400
        assert oauth_error(response) == {
            "error": "invalid_client_metadata",
            "error_description": "The request body must be a JSON object.",
        }
    assert state() == (0, 0, [])
    assert token_record(token).uses == 0


def test_registration_is_off_when_dcr_is_disabled(client: Client, settings: Any) -> None:
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "DCR_ENABLED": False}

    response = register(client, NATIVE_CLIENT, token=initial_token())

    assert response.status_code == 404
    assert state() == (0, 0, [])


def test_other_methods_get_a_json_405(client: Client) -> None:
    response = client.get(REGISTER_URL)

    assert response.status_code == 405
    assert response.json()["error"] == "invalid_request"
    assert response["Allow"] == "POST, OPTIONS"


# --- the policy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "errors"),
    [
        ({"grant_types": ["implicit"], "response_types": ["token"]}, "invalid_client_metadata", None),
        ({"grant_types": ["password"]}, "invalid_client_metadata", [("grant_types", "grant_type_forbidden")]),
        (
            {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"},
            "invalid_client_metadata",
            [("grant_types", "grant_type_not_allowed")],
        ),
        (
            {"grant_types": ["urn:example:custom"]},
            "invalid_client_metadata",
            [("grant_types", "grant_type_unsupported")],
        ),
        (
            {"grant_types": ["refresh_token"]},
            "invalid_client_metadata",
            [("grant_types", "grant_types_empty")],
        ),
        ({"scope": "openid admin:everything"}, "invalid_client_metadata", [("scope", "scope_unknown")]),
        ({"scope": "openid users:write"}, "invalid_client_metadata", [("scope", "scope_not_allowed")]),
        (
            {"response_types": ["code", "id_token"]},
            "invalid_client_metadata",
            [("response_types", "response_type_forbidden")],
        ),
        (
            {"token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
            [("token_endpoint_auth_method", "auth_method_unsupported")],
        ),
        (
            {"redirect_uris": "https://one.example/cb"},
            "invalid_redirect_uri",
            [("redirect_uris", "invalid_type")],
        ),
        (
            {"redirect_uris": ["http://notes.example/callback"]},
            "invalid_redirect_uri",
            [("redirect_uris", "redirect_uri_not_https")],
        ),
        ({"redirect_uris": []}, "invalid_redirect_uri", [("redirect_uris", "redirect_uris_required")]),
        (
            {"post_logout_redirect_uris": ["https://*.notes.example/bye"]},
            "invalid_redirect_uri",
            [("post_logout_redirect_uris", "redirect_uri_wildcard")],
        ),
        (
            {"logo_uri": "http://notes.example/logo.png"},
            "invalid_client_metadata",
            [("logo_uri", "uri_not_https")],
        ),
        ({"contacts": ["not an address"]}, "invalid_client_metadata", [("contacts", "contact_invalid")]),
        ({"client_name": 42}, "invalid_client_metadata", [("client_name", "invalid_type")]),
    ],
)
def test_registrations_against_the_policy_are_refused_and_change_nothing(
    client: Client, change: dict[str, Any], error: str, errors: list[tuple[str, str]] | None
) -> None:
    token = initial_token()

    response = register(client, {**NATIVE_CLIENT, **change}, token=token)

    assert response.status_code == 400
    assert response["Cache-Control"] == "no-store"
    assert response.json()["error"] == error
    if errors is not None:
        assert registration_errors(response) == errors
    assert state() == (0, 0, [])
    assert token_record(token).uses == 0


def test_the_implicit_grant_is_refused_with_its_response_type() -> None:
    response = register(Client(), {**NATIVE_CLIENT, "grant_types": ["implicit"]}, token=initial_token())

    assert registration_errors(response) == [("grant_types", "grant_type_forbidden")]
    assert (
        response.json()["error_description"] == "grant_types: The implicit grant is not supported (RFC 9700)."
    )


def test_every_problem_is_reported_at_once(client: Client) -> None:
    metadata = {**NATIVE_CLIENT, "grant_types": ["password"], "scope": "openid users:write", "contacts": "x"}

    response = register(client, metadata, token=initial_token())

    assert registration_errors(response) == [
        ("grant_types", "grant_type_forbidden"),
        ("scope", "scope_not_allowed"),
        ("contacts", "invalid_type"),
    ]


def test_a_public_client_cannot_use_client_credentials(client: Client) -> None:
    token = initial_token(allowed_grant_types=["client_credentials"])

    response = register(
        client, {"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}, token=token
    )

    assert response.status_code == 400
    assert registration_errors(response) == [("token_endpoint_auth_method", "public_client_grant")]


def test_client_credentials_only_when_the_initial_access_token_allows_it(client: Client) -> None:
    token = initial_token(allowed_grant_types=["client_credentials"], allowed_scopes=["users:read"])

    response = register(
        client,
        {"client_name": "Nightly sync", "grant_types": ["client_credentials"], "scope": "users:read"},
        token=token,
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["grant_types"], body["response_types"], body["redirect_uris"]) == (
        ["client_credentials"],
        [],
        [],
    )
    assert Application.objects.get().authorization_grant_type == Application.GRANT_CLIENT_CREDENTIALS


def test_one_grant_per_client(client: Client) -> None:
    token = initial_token(allowed_grant_types=["authorization_code", "client_credentials"])

    response = register(
        client, {**WEB_CLIENT, "grant_types": ["authorization_code", "client_credentials"]}, token=token
    )

    assert response.status_code == 400
    assert registration_errors(response) == [("grant_types", "grant_types_conflict")]


def test_an_initial_access_token_may_widen_the_scopes(client: Client) -> None:
    token = initial_token(allowed_scopes=["openid", "users:write"])

    allowed = register(client, {**WEB_CLIENT, "scope": "openid users:write"}, token=token)
    refused = register(client, {**WEB_CLIENT, "scope": "openid email"}, token=token)

    assert allowed.status_code == 201
    assert registration_errors(refused) == [("scope", "scope_not_allowed")]


# --- registering as staff ----------------------------------------------------------------------------


def test_an_admin_registers_a_client_with_their_session() -> None:
    admin = person("root", Role.ADMIN)

    response = staff_register(session_client(admin), {**WEB_CLIENT, "scope": "openid users:write"})

    assert response.status_code == 201
    application = Application.objects.get()
    assert (application.user, application.skip_authorization, application.allowed_scopes) == (
        admin,
        False,
        "openid users:write",
    )
    assert ClientRegistration.objects.get().registered_by == admin
    [event] = AuditEvent.objects.filter(action="oauth.client.registered")
    assert (event.actor_type, event.actor_id) == ("user", str(admin.pk))
    assert (event.metadata["via"], event.metadata["registered_by"]) == ("staff", str(admin.pk))


def test_a_session_registration_needs_the_csrf_token() -> None:
    admin = person("root", Role.ADMIN)

    response = register(session_client(admin, csrf=False), WEB_CLIENT)

    assert response.status_code == 403
    assert response.json()["error_description"] == "CSRF verification failed."
    assert state() == (0, 0, [])


@pytest.mark.parametrize("roles", [(Role.MODERATOR,), ()])
def test_only_admins_register_with_their_session(roles: tuple[str, ...]) -> None:
    user = person("someone", *roles)

    response = staff_register(session_client(user), WEB_CLIENT)

    assert response.status_code == 403
    assert oauth_error(response) == {
        "error": "access_denied",
        "error_description": "You may not register OAuth clients.",
    }
    assert state() == (0, 0, [])


# --- RFC 7592: the client's own configuration endpoint ----------------------------------------------------


@pytest.fixture
def registered(client: Client) -> dict[str, Any]:
    body: dict[str, Any] = register(client, WEB_CLIENT, token=initial_token()).json()
    return body


def test_a_client_reads_its_registration_with_its_registration_access_token(
    client: Client, registered: dict[str, Any]
) -> None:
    response = configuration(client, "get", registered["client_id"], registered["registration_access_token"])

    assert response.status_code == 200
    assert response.json() == {key: value for key, value in registered.items() if key != "client_secret"}


@pytest.mark.parametrize("presented", [None, "rat_wrong", "iat_wrong"])
def test_the_configuration_endpoint_refuses_without_the_registration_access_token(
    client: Client, registered: dict[str, Any], presented: str | None
) -> None:
    for method in ("get", "put", "delete"):
        response = configuration(client, method, registered["client_id"], presented, body=WEB_CLIENT)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
    assert Application.objects.get().name == "Photo printer"


def test_a_registration_access_token_manages_only_its_own_client(
    client: Client, registered: dict[str, Any]
) -> None:
    other = register(client, NATIVE_CLIENT, token=initial_token()).json()

    response = configuration(client, "delete", other["client_id"], registered["registration_access_token"])

    assert response.status_code == 401
    assert Application.objects.count() == 2


def test_an_initial_access_token_does_not_manage_clients(client: Client, registered: dict[str, Any]) -> None:
    token = initial_token()

    response = configuration(client, "get", registered["client_id"], token)

    assert response.status_code == 401


def test_a_client_updates_its_registration_and_gets_a_new_registration_access_token(
    client: Client, registered: dict[str, Any]
) -> None:
    update = {
        **WEB_CLIENT,
        "client_id": registered["client_id"],
        "client_name": "Photo printer 2",
        "redirect_uris": [WEB_REDIRECT_URI, "https://printer.example/callback2"],
    }

    response = configuration(
        client, "put", registered["client_id"], registered["registration_access_token"], update
    )

    assert response.status_code == 200
    body = response.json()
    assert body["client_name"] == "Photo printer 2"
    assert body["redirect_uris"] == [WEB_REDIRECT_URI, "https://printer.example/callback2"]
    assert body["registration_access_token"] != registered["registration_access_token"]
    application = Application.objects.get()
    assert application.redirect_uris == f"{WEB_REDIRECT_URI} https://printer.example/callback2"
    old = configuration(client, "get", registered["client_id"], registered["registration_access_token"])
    new = configuration(client, "get", registered["client_id"], body["registration_access_token"])
    assert (old.status_code, new.status_code) == (401, 200)
    [event] = AuditEvent.objects.filter(action="oauth.client.updated")
    assert (event.actor_type, event.actor_id) == ("client", registered["client_id"])
    assert event.changes == {
        "name": ["Photo printer", "Photo printer 2"],
        "redirect_uris": [WEB_REDIRECT_URI, f"{WEB_REDIRECT_URI} https://printer.example/callback2"],
    }
    assert event.metadata["via"] == "registration"


def test_an_update_against_the_policy_changes_nothing(client: Client, registered: dict[str, Any]) -> None:
    token = registered["registration_access_token"]
    update = {
        **WEB_CLIENT,
        "client_id": registered["client_id"],
        "redirect_uris": ["http://printer.example/cb"],
    }

    response = configuration(client, "put", registered["client_id"], token, update)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"
    assert Application.objects.get().redirect_uris == WEB_REDIRECT_URI
    assert configuration(client, "get", registered["client_id"], token).status_code == 200  # not rotated
    assert not AuditEvent.objects.filter(action="oauth.client.updated").exists()


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"client_id": "someone-else"}, [("client_id", "client_id_mismatch")]),
        ({"client_secret": "wrong"}, [("client_secret", "client_secret_mismatch")]),
        ({"token_endpoint_auth_method": "none"}, [("token_endpoint_auth_method", "client_type_change")]),
    ],
)
def test_an_update_must_keep_the_client_identity(
    client: Client, registered: dict[str, Any], change: dict[str, Any], errors: list[tuple[str, str]]
) -> None:
    update = {**WEB_CLIENT, "client_id": registered["client_id"], **change}

    response = configuration(
        client, "put", registered["client_id"], registered["registration_access_token"], update
    )

    assert response.status_code == 400
    assert registration_errors(response) == errors
    assert Application.objects.get().client_type == Application.CLIENT_CONFIDENTIAL


def test_a_client_changing_its_configuration_loses_the_trust_an_admin_gave_it(
    client: Client, registered: dict[str, Any]
) -> None:
    application = Application.objects.get()
    application_update(application=application, changes={"skip_authorization": True}, actor=None)
    update = {
        **WEB_CLIENT,
        "client_id": registered["client_id"],
        "redirect_uris": ["https://elsewhere.example/cb"],
    }

    response = configuration(
        client, "put", registered["client_id"], registered["registration_access_token"], update
    )

    assert response.status_code == 200
    assert Application.objects.get().skip_authorization is False


def test_a_client_deletes_its_registration(client: Client, registered: dict[str, Any]) -> None:
    response = configuration(
        client, "delete", registered["client_id"], registered["registration_access_token"]
    )

    assert response.status_code == 204
    assert (Application.objects.count(), ClientRegistration.objects.count()) == (0, 0)
    [event] = AuditEvent.objects.filter(action="oauth.client.deleted")
    assert (event.actor_type, event.actor_id, event.target_label) == (
        "client",
        registered["client_id"],
        "Photo printer",
    )
    assert event.metadata == {
        "client_id": registered["client_id"],
        "client_name": "Photo printer",
        "via": "registration",
    }
    gone = configuration(client, "get", registered["client_id"], registered["registration_access_token"])
    assert gone.status_code == 401


def test_the_registration_access_token_is_no_api_token(client: Client, registered: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {registered['registration_access_token']}"}

    assert client.get("/api/v1/users/me/", headers=headers).status_code == 401
    assert client.get("/o/userinfo/", headers=headers).status_code == 401


# --- a registered client signs a user in -------------------------------------------------------------


def _consent_fields(page: Any) -> dict[str, str]:
    """The consent form's hidden fields, as a browser posts them."""
    content = page.content.decode()
    fields = {}
    for tag in re.findall(r"<input[^>]*type=\"hidden\"[^>]*>", content):
        name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = value.group(1).replace("&amp;", "&") if value else ""
    return fields


def authorization_code_flow(registered: dict[str, Any], *, redirect_uri: str, scope: str) -> Any:
    """A user signs in, consents, and the client redeems the code with PKCE at /o/token/."""
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    browser = Client()
    browser.force_login(user)
    pair = pkce()
    query = {
        "response_type": "code",
        "client_id": registered["client_id"],
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "xyz",
        "code_challenge": pair.challenge,
        "code_challenge_method": "S256",
    }
    page = browser.get(f"/o/authorize/?{urlencode(query)}")
    assert page.status_code == 200, page.content[:500]
    answer = browser.post("/o/authorize/", {**_consent_fields(page), "allow": "true"})
    assert answer.status_code == 302, answer.content[:500]
    location = urlsplit(answer["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == redirect_uri
    code = parse_qs(location.query)["code"][0]
    token_request = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": registered["client_id"],
        "code_verifier": pair.verifier,
    }
    if "client_secret" in registered:
        token_request["client_secret"] = registered["client_secret"]
    return Client().post("/o/token/", token_request)


def test_a_registered_native_app_signs_a_user_in_with_pkce(client: Client) -> None:
    registered = register(client, NATIVE_CLIENT, token=initial_token()).json()

    response = authorization_code_flow(registered, redirect_uri=NATIVE_REDIRECT_URI, scope="openid profile")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["token_type"], body["scope"]) == ("Bearer", "openid profile")
    assert body["access_token"]
    assert body["id_token"]


def test_a_registered_web_app_signs_a_user_in(client: Client) -> None:
    registered = register(client, WEB_CLIENT, token=initial_token()).json()

    response = authorization_code_flow(registered, redirect_uri=WEB_REDIRECT_URI, scope="openid email")

    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "openid email"


# --- the management command ----------------------------------------------------------------------------


def run(*args: str) -> str:
    output = io.StringIO()
    call_command("oauth_initial_token", *args, stdout=output)
    return output.getvalue()


def test_the_command_issues_lists_and_revokes_initial_access_tokens(client: Client) -> None:
    admin = person("root", Role.ADMIN)

    issued = run("issue", "--label", "MCP clients", "--days", "2", "--max-uses", "3", "--created-by", "root")
    value = issued.splitlines()[1]
    token = token_record(value)
    listed = run("list")
    assert (token.label, token.max_uses, token.created_by, token.allowed_grant_types) == (
        "MCP clients",
        3,
        admin,
        ["authorization_code", "refresh_token"],
    )
    assert value.startswith("iat_")
    assert f"{token.token_prefix}…" in listed
    assert register(client, NATIVE_CLIENT, token=value).status_code == 201

    revoked = run("revoke", str(token.pk), "--revoked-by", "root")

    assert revoked == f"Revoked {token.pk} (MCP clients).\n"
    assert run("list") == ""
    assert str(token.pk) in run("list", "--all")
    assert register(client, NATIVE_CLIENT, token=value).status_code == 401
    actions = list(
        AuditEvent.objects.filter(action__startswith="oauth.initial_access.")
        .order_by("id")
        .values_list("action", "actor_id")
    )
    assert actions == [
        ("oauth.initial_access.issued", str(admin.pk)),
        ("oauth.initial_access.revoked", str(admin.pk)),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("issue", "--label", "x", "--grant-type", "authorization_code", "--scope", "nope"),
            "Unknown scopes: nope.",
        ),
        (("issue", "--label", "x", "--days", "0"), "--days must be positive."),
        (("revoke", "not-a-uuid"), "No initial access token not-a-uuid."),
    ],
)
def test_the_command_refuses_bad_input(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)
    assert InitialAccessToken.objects.count() == 0
