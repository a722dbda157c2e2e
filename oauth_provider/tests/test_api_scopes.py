"""Our API enforces OAuth scopes: an OAuth access token needs the scopes its endpoint declares,
and an endpoint that declares none refuses OAuth tokens (docs/decisions/0015)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import MembershipFactory, UserFactory
from config.api import urls as api_urls
from oauth_provider.models import Application
from oauth_provider.tests.token_flows import bearer, registered_client, token_request, tokens

pytestmark = pytest.mark.django_db

ME = "/api/v1/users/me/"
ALL_API_SCOPES = "openid users:read users:write organizations:read organizations:write"


def oauth_api(scope: str, *, user: User | None = None) -> APIClient:
    """The API as a third-party application calls it: with an access token of these scopes."""
    client = registered_client(allowed_scopes=ALL_API_SCOPES)
    return bearer(tokens(client, user=user or UserFactory.create(), scope=scope)["access_token"])


def insufficient_scope(response: Any, required: str | None) -> None:
    assert response.status_code == 403
    detail = (
        f"This access token lacks the scopes this endpoint needs: {required}."
        if required
        else "This endpoint does not accept OAuth access tokens."
    )
    assert response.json() == {
        "type": "client_error",
        "errors": [{"code": "insufficient_scope", "detail": detail, "attr": None}],
    }
    challenge = 'Bearer error="insufficient_scope"' + (f', scope="{required}"' if required else "")
    assert response["WWW-Authenticate"] == challenge


def test_reading_me_needs_users_read() -> None:
    user = UserFactory.create()

    allowed = oauth_api("openid users:read", user=user).get(ME)
    refused = oauth_api("openid", user=user).get(ME)

    assert allowed.status_code == 200
    assert allowed.json()["id"] == str(user.pk)
    insufficient_scope(refused, "users:read")


def test_changing_me_needs_users_write_and_a_refusal_changes_nothing() -> None:
    user = UserFactory.create(description="before")

    refused = oauth_api("openid users:read", user=user).patch(ME, {"description": "after"}, format="json")

    insufficient_scope(refused, "users:write")
    assert User.objects.get(pk=user.pk).description == "before"
    allowed = oauth_api("openid users:write", user=user).patch(ME, {"description": "after"}, format="json")
    assert allowed.status_code == 200, allowed.content
    assert User.objects.get(pk=user.pk).description == "after"


def test_another_users_profile_needs_users_read() -> None:
    other = UserFactory.create()

    insufficient_scope(oauth_api("openid").get(f"/api/v1/users/{other.pk}/"), "users:read")
    assert oauth_api("users:read").get(f"/api/v1/users/{other.pk}/").status_code == 200


def test_blocking_needs_users_write() -> None:
    other = UserFactory.create()

    insufficient_scope(oauth_api("users:read").post(f"/api/v1/users/{other.pk}/block/"), "users:write")
    assert oauth_api("users:write").post(f"/api/v1/users/{other.pk}/block/").status_code == 204


def test_organizations_need_their_own_scopes() -> None:
    membership = MembershipFactory.create()
    path = "/api/v1/organizations/"

    insufficient_scope(oauth_api("users:read", user=membership.user).get(path), "organizations:read")
    listed = oauth_api("organizations:read", user=membership.user).get(path)
    assert listed.status_code == 200
    insufficient_scope(
        oauth_api("organizations:read").post(path, {"name": "Acme", "slug": "acme"}, format="json"),
        "organizations:write",
    )
    created = oauth_api("organizations:write").post(path, {"name": "Acme", "slug": "acme"}, format="json")
    assert created.status_code == 201, created.content
    members = f"/api/v1/organizations/{membership.organization_id}/members/"
    insufficient_scope(oauth_api("users:read", user=membership.user).get(members), "organizations:read")
    assert oauth_api("organizations:read", user=membership.user).get(members).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/api/v1/sessions/", "/api/v1/users/me/audit-events/", "/api/v1/audit-events/"],
    ids=["devices", "my-audit-trail", "audit-trail"],
)
def test_endpoints_that_declare_no_scope_refuse_every_oauth_token(path: str, settings: Any) -> None:
    settings.ACCOUNTS_MFA_REQUIRED_FOR_STAFF = False
    staff = UserFactory.create(is_staff=True)

    insufficient_scope(oauth_api(ALL_API_SCOPES, user=staff).get(path), None)
    session = APIClient()
    session.force_login(staff)
    assert session.get(path).status_code == 200  # the same caller, signed in first-party


def test_first_party_only_endpoints_say_why_once_the_scope_is_there() -> None:
    response = oauth_api("users:read").post("/api/v1/users/me/export/")

    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "first_party_only"


def test_a_client_credentials_token_is_refused_by_the_api() -> None:
    client = registered_client(grant_type=Application.GRANT_CLIENT_CREDENTIALS, allowed_scopes="users:read")
    access = token_request({"grant_type": "client_credentials", **client.credentials()}).json()[
        "access_token"
    ]

    insufficient_scope(bearer(access).get("/api/v1/users/"), None)


def test_first_party_callers_are_not_subject_to_oauth_scopes() -> None:
    user = UserFactory.create()
    session = APIClient()
    session.force_login(user)

    assert session.get(ME).status_code == 200
    assert session.patch(ME, {"description": "mine"}, format="json").status_code == 200


def test_a_deactivated_users_oauth_token_is_refused_at_once() -> None:
    user = UserFactory.create()
    api = oauth_api("users:read", user=user)
    assert api.get(ME).status_code == 200
    User.objects.filter(pk=user.pk).update(is_active=False)  # even behind the services' back

    response = api.get(ME)

    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "token_not_valid"


def _api_views(patterns: list[Any]) -> list[Any]:
    views = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            views += _api_views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "cls", None)
            if view_class is not None:
                views.append(view_class)
    return views


def test_every_declared_scope_is_a_scope_of_the_server() -> None:
    known = set(settings.OAUTH2_PROVIDER["SCOPES"])
    declared = {
        (view.__name__, action, scope)
        for view in _api_views(api_urls.urlpatterns)
        for action, scopes in (getattr(view, "required_scopes", None) or {}).items()
        for scope in scopes
    }

    assert declared
    assert {scope for _, _, scope in declared} <= known
    assert {scope for _, _, scope in declared} == {
        "users:read",
        "users:write",
        "organizations:read",
        "organizations:write",
    }
