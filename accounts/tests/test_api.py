"""The users resource over HTTP."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_me_returns_the_caller(user_client: APIClient, user: User) -> None:
    response = user_client.get("/api/v1/users/me/")

    assert response.status_code == 200
    assert response.json() == {
        "id": str(user.id),
        "username": user.username,
        "display_name": user.username,
        "email": user.email,
        "description": "",
        "is_active": True,
        "created_at": user.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_me_updates_display_name_and_description(user_client: APIClient, user: User) -> None:
    new_display_name = user.username.upper().replace("_", " ")

    response = user_client.patch(
        "/api/v1/users/me/", {"display_name": new_display_name, "description": "Hello."}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["display_name"] == new_display_name
    user.refresh_from_db()
    assert (user.display_name, user.description) == (new_display_name, "Hello.")


def test_me_ignores_fields_it_does_not_own(user_client: APIClient, user: User) -> None:
    response = user_client.patch(
        "/api/v1/users/me/",
        {"is_staff": True, "username": "new_name", "email": "x@example.com"},
        format="json",
    )

    assert response.status_code == 200
    user.refresh_from_db()
    assert (user.is_staff, user.username, user.email) == (
        False,
        user.username,
        f"{user.username}@example.com",
    )


def test_staff_lists_users_in_pages(staff_client: APIClient, staff_user: User) -> None:
    UserFactory.create_batch(3)

    response = staff_client.get("/api/v1/users/?page_size=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert len(body["results"]) == 2
    assert body["next"].endswith("/api/v1/users/?page=2&page_size=2")


def test_staff_reads_one_user(staff_client: APIClient, user: User) -> None:
    response = staff_client.get(f"/api/v1/users/{user.id}/")

    assert response.status_code == 200
    assert response.json()["username"] == user.username


def test_schema_documents_token_refresh_devices_and_links_the_account_api(api_client: APIClient) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    refresh = schema["paths"]["/api/v1/auth/token/refresh/"]["post"]
    request_body = refresh["requestBody"]["content"]["application/json"]["schema"]
    assert request_body["$ref"] == "#/components/schemas/TokenRefreshRequest"
    assert {"200", "400", "401", "429"} <= set(refresh["responses"])
    assert set(schema["paths"]["/api/v1/sessions/"]) == {"get"}
    assert set(schema["paths"]["/api/v1/sessions/{id}/"]) == {"delete"}
    assert set(schema["paths"]["/api/v1/sessions/revoke-others/"]) == {"post"}
    assert schema["externalDocs"]["url"] == "/_allauth/openapi.yaml"
    assert api_client.get("/_allauth/openapi.yaml").status_code == 200
