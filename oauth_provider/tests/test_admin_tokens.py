"""Grants and tokens in the Django admin: read-only lists by user, client and state in a constant
number of queries, never a usable credential on the page, and the audited "Revoke" action."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import AccessToken, DeviceGrant, Grant, IDToken, RefreshToken, set_token_value

from accounts.models import Role, User
from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from oauth_provider.models import Application
from oauth_provider.services import application_create
from oauth_provider.tests.test_registration import person

pytestmark = pytest.mark.django_db

ADMIN = "/admin/oauth2_provider"
ACCESS_TOKENS_URL = f"{ADMIN}/accesstoken/"
REFRESH_TOKENS_URL = f"{ADMIN}/refreshtoken/"
CHANGELISTS = [
    f"{ADMIN}/accesstoken/",
    f"{ADMIN}/refreshtoken/",
    f"{ADMIN}/idtoken/",
    f"{ADMIN}/grant/",
    f"{ADMIN}/devicegrant/",
]


@pytest.fixture
def admin() -> User:
    return person("root", Role.ADMIN)


@pytest.fixture
def admin_client(admin: User) -> Client:
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def moderator_client() -> Client:
    client = Client()
    client.force_login(person("mod", Role.MODERATOR))
    return client


@pytest.fixture
def printer() -> Application:
    return application_create(
        name="Photo printer",
        owner=None,
        client_id="printer-client",
        redirect_uris="https://printer.example/cb",
    ).application


def token_pair(
    user: User, application: Application, *, scope: str = "openid profile", expires_in: int = 600
) -> tuple[AccessToken, RefreshToken, str]:
    """An access token with its refresh token, stored as the toolkit stores them (hashed)."""
    value = f"access-{uuid.uuid4().hex}"
    access = AccessToken(
        user=user,
        application=application,
        scope=scope,
        expires=timezone.now() + timedelta(seconds=expires_in),
    )
    set_token_value(access, value)
    access.save()
    refresh = RefreshToken(user=user, application=application, access_token=access, token_family=uuid.uuid4())
    set_token_value(refresh, f"refresh-{uuid.uuid4().hex}")
    refresh.save()
    return access, refresh, value


def every_kind(user: User, application: Application) -> None:
    """One of each: access and refresh token, ID token, authorization code, device authorization."""
    token_pair(user, application)
    IDToken.objects.create(
        user=user, application=application, scope="openid", expires=timezone.now() + timedelta(minutes=5)
    )
    Grant.objects.create(
        user=user,
        application=application,
        code=f"code-{uuid.uuid4().hex}",
        expires=timezone.now() + timedelta(minutes=1),
        redirect_uri="https://printer.example/cb",
        scope="openid",
        code_challenge="x" * 43,
        code_challenge_method="S256",
    )
    DeviceGrant.objects.create(
        user=user,
        client_id=application.client_id,
        device_code=f"device-{uuid.uuid4().hex}",
        user_code=f"U{uuid.uuid4().hex[:7]}",
        scope="openid",
        expires=timezone.now() + timedelta(minutes=10),
    )


def listed(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- lists ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", CHANGELISTS)
def test_staff_list_grants_and_tokens_without_a_usable_credential(
    admin_client: Client, moderator_client: Client, printer: Application, url: str
) -> None:
    alice = UserFactory.create(username="alice")
    every_kind(alice, printer)
    secrets = [
        *Grant.objects.values_list("code", flat=True),
        *DeviceGrant.objects.values_list("device_code", flat=True),
        *DeviceGrant.objects.values_list("user_code", flat=True),
    ]

    for client in (admin_client, moderator_client):
        response = client.get(url)
        assert response.status_code == 200
        assert len(listed(response)) == 1
        page = response.content.decode()
        assert "alice" in page
        for secret in secrets:
            assert secret not in page


def test_the_access_token_list_shows_user_client_scope_expiry_and_state(
    admin_client: Client, printer: Application
) -> None:
    alice = UserFactory.create(username="alice")
    access, _, value = token_pair(alice, printer, scope="openid email")

    response = admin_client.get(ACCESS_TOKENS_URL)

    model_admin = response.context["cl"].model_admin
    assert list(response.context["cl"].list_display) == [
        "action_checkbox",
        "id",
        "checksum",
        "user",
        "client",
        "scope",
        "expires",
        "state",
        "created",
    ]
    assert model_admin.checksum(access) == f"{hashlib.sha256(value.encode()).hexdigest()[:10]}…"
    assert (model_admin.client(access), model_admin.state(access)) == (
        "Photo printer (printer-client)",
        "active",
    )
    page = response.content.decode()
    assert value not in page
    assert access.token_checksum not in page  # only its first characters


def test_a_token_s_page_is_read_only_and_shows_no_token(admin_client: Client, printer: Application) -> None:
    access, refresh, value = token_pair(UserFactory.create(), printer)

    for url in (f"{ACCESS_TOKENS_URL}{access.pk}/change/", f"{REFRESH_TOKENS_URL}{refresh.pk}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        content = page.content.decode()
        assert 'name="_save"' not in content
        assert value not in content
        assert 'name="token"' not in content
    assert (
        admin_client.post(f"{ACCESS_TOKENS_URL}{access.pk}/change/", {"scope": "everything"}).status_code
        == 403
    )
    assert admin_client.get(f"{ACCESS_TOKENS_URL}add/").status_code == 403
    assert admin_client.post(f"{ACCESS_TOKENS_URL}{access.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AccessToken.objects.get().scope == "openid profile"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice", ["alice"]),
        ("bob@example", ["bob"]),
        ("printer-client", ["alice"]),
        ("other-client", ["bob"]),
    ],
)
def test_tokens_are_found_by_username_email_or_client_id(
    admin_client: Client, printer: Application, query: str, expected: list[str]
) -> None:
    other = application_create(
        name="Other", owner=None, client_id="other-client", redirect_uris="https://other.example/cb"
    ).application
    token_pair(UserFactory.create(username="alice"), printer)
    token_pair(UserFactory.create(username="bob"), other)

    for url in (ACCESS_TOKENS_URL, REFRESH_TOKENS_URL):
        response = admin_client.get(url, {"q": query})
        assert [token.user.username for token in listed(response)] == expected


def test_filters_by_client_and_state(admin_client: Client, printer: Application) -> None:
    other = application_create(name="Other", owner=None, redirect_uris="https://other.example/cb").application
    live, _, _ = token_pair(UserFactory.create(), printer)
    expired, _, _ = token_pair(UserFactory.create(), printer, expires_in=-60)
    _, elsewhere_refresh, _ = token_pair(UserFactory.create(), other)
    elsewhere_refresh.revoke()
    old, _, _ = token_pair(UserFactory.create(), other)
    RefreshToken.objects.filter(access_token=old).update(created=timezone.now() - timedelta(days=31))

    def ids(url: str, **query: str) -> set[int]:
        return {token.pk for token in listed(admin_client.get(url, query))}

    assert ids(ACCESS_TOKENS_URL, state="active") == {live.pk, old.pk}
    assert ids(ACCESS_TOKENS_URL, state="expired") == {expired.pk}
    assert ids(ACCESS_TOKENS_URL, application__id__exact=str(printer.pk)) == {live.pk, expired.pk}
    refresh = {token.access_token_id: token.pk for token in RefreshToken.objects.all()}
    assert ids(REFRESH_TOKENS_URL, state="revoked") == {RefreshToken.objects.get(revoked__isnull=False).pk}
    assert ids(REFRESH_TOKENS_URL, state="expired") == {refresh[old.pk]}
    assert ids(REFRESH_TOKENS_URL, state="active") == {refresh[live.pk], refresh[expired.pk]}


def changelist_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", CHANGELISTS)
def test_every_list_costs_the_same_queries_for_5_or_50_rows(
    admin_client: Client, printer: Application, url: str, django_assert_max_num_queries: Any
) -> None:
    users = UserFactory.create_batch(5)
    for user in users:
        every_kind(user, printer)
    five = changelist_queries(admin_client, url)
    for number in range(45):
        every_kind(users[number % 5], printer)

    with django_assert_max_num_queries(five):
        response = admin_client.get(url)

    assert len(listed(response)) == 50


# --- revoking ---------------------------------------------------------------------------------------


def revoke(client: Client, url: str, *records: Any) -> Any:
    return client.post(
        url, {"action": "revoke_selected", "_selected_action": [str(record.pk) for record in records]}
    )


def test_revoking_a_refresh_token_revokes_its_access_token(
    admin_client: Client, admin: User, printer: Application
) -> None:
    alice = UserFactory.create()
    access, refresh, _ = token_pair(alice, printer)

    response = revoke(admin_client, REFRESH_TOKENS_URL, refresh)

    assert response.status_code == 302
    assert messages_of(response) == ["Revoked 1 of 1 selected."]
    refresh.refresh_from_db()
    assert refresh.revoked is not None
    assert not AccessToken.objects.filter(pk=access.pk).exists()
    [event] = AuditEvent.objects.filter(action="oauth.token.revoked")
    assert (event.actor_id, event.target_type, event.target_id) == (
        str(admin.pk),
        "accounts.user",
        str(alice.pk),
    )
    assert event.metadata == {"kind": "refreshtoken", "record_id": refresh.pk, "client_id": "printer-client"}


def test_revoking_an_access_token_revokes_its_refresh_token(
    admin_client: Client, printer: Application
) -> None:
    access, refresh, _ = token_pair(UserFactory.create(), printer)

    revoke(admin_client, ACCESS_TOKENS_URL, access)

    assert not AccessToken.objects.exists()
    refresh.refresh_from_db()
    assert refresh.revoked is not None
    assert AuditEvent.objects.get(action="oauth.token.revoked").metadata["kind"] == "accesstoken"


def test_revoking_twice_reports_the_second_time(admin_client: Client, printer: Application) -> None:
    _, refresh, _ = token_pair(UserFactory.create(), printer)
    first = revoke(admin_client, REFRESH_TOKENS_URL, refresh)
    admin_client.get(first["Location"])  # shows (and so spends) the first answer's message

    response = revoke(admin_client, REFRESH_TOKENS_URL, refresh)

    assert messages_of(response) == ["Revoked 0 of 1 selected.", "1 were revoked already."]
    assert AuditEvent.objects.filter(action="oauth.token.revoked").count() == 1


def test_revoking_codes_id_tokens_and_device_authorizations(
    admin_client: Client, printer: Application
) -> None:
    alice = UserFactory.create()
    every_kind(alice, printer)
    id_token = IDToken.objects.get()
    AccessToken.objects.update(id_token=id_token)

    revoke(admin_client, f"{ADMIN}/grant/", Grant.objects.get())
    revoke(admin_client, f"{ADMIN}/idtoken/", id_token)
    revoke(admin_client, f"{ADMIN}/devicegrant/", DeviceGrant.objects.get())

    assert (Grant.objects.count(), IDToken.objects.count(), AccessToken.objects.count()) == (0, 0, 0)
    assert DeviceGrant.objects.get().status == DeviceGrant.DENIED
    assert RefreshToken.objects.get().revoked is not None
    kinds = (
        AuditEvent.objects.filter(action="oauth.token.revoked")
        .order_by("id")
        .values_list("metadata__kind", flat=True)
    )
    assert list(kinds) == ["grant", "idtoken", "devicegrant"]


def test_a_client_s_own_token_is_audited_about_the_client(admin_client: Client, printer: Application) -> None:
    access = AccessToken(
        application=printer, scope="users:read", expires=timezone.now() + timedelta(minutes=10)
    )
    set_token_value(access, "client-credentials-token")
    access.save()

    revoke(admin_client, ACCESS_TOKENS_URL, access)

    event = AuditEvent.objects.get(action="oauth.token.revoked")
    assert (event.target_type, event.target_id) == ("oauth_provider.application", str(printer.pk))


def test_moderators_cannot_revoke(moderator_client: Client, printer: Application) -> None:
    access, refresh, _ = token_pair(UserFactory.create(), printer)

    page = moderator_client.get(REFRESH_TOKENS_URL)
    response = revoke(moderator_client, REFRESH_TOKENS_URL, refresh)

    assert "revoke_selected" not in page.content.decode()
    assert response.status_code == 200  # "No action selected": not an action they have
    refresh.refresh_from_db()
    assert refresh.revoked is None
    assert AccessToken.objects.filter(pk=access.pk).exists()
    assert not AuditEvent.objects.filter(action="oauth.token.revoked").exists()
