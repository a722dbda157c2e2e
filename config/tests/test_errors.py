"""One error shape for every API error, never an HTML page for an API client."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.api import users as user_views
from accounts.models import User

pytestmark = pytest.mark.django_db


def single_error(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"type", "errors"}
    assert len(body["errors"]) == 1
    return {"type": body["type"], **body["errors"][0]}


def test_validation_error_names_each_field_and_rule(user_client: APIClient, user: User) -> None:
    response = user_client.patch(
        "/api/v1/users/me/", {"display_name": "Somebody Else", "description": "x" * 257}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert sorted((error["attr"], error["code"]) for error in body["errors"]) == [
        ("description", "max_length"),
    ]
    user.refresh_from_db()
    assert (user.display_name, user.description) == (user.username, "")


def test_validation_error_from_the_model_rules_keeps_its_code(user_client: APIClient, user: User) -> None:
    response = user_client.patch("/api/v1/users/me/", {"display_name": "Somebody Else"}, format="json")

    assert response.status_code == 400
    assert single_error(response) == {
        "type": "validation_error",
        "code": "display_name_mismatch",
        "detail": "The display name may differ from the username only by letter case and spaces.",
        "attr": "display_name",
    }
    user.refresh_from_db()
    assert user.display_name == user.username


def test_malformed_json_is_a_400(user_client: APIClient) -> None:
    response = user_client.generic("PATCH", "/api/v1/users/me/", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert single_error(response)["code"] == "parse_error"


def test_missing_token_is_a_401(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/users/me/")

    assert response.status_code == 401
    assert single_error(response) == {
        "type": "client_error",
        "code": "not_authenticated",
        "detail": "Authentication credentials were not provided.",
        "attr": None,
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "token",
    ["not-a-token", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.bad-signature", "a.b.c"],
)
def test_invalid_token_is_a_401(api_client: APIClient, token: str) -> None:
    response = api_client.get("/api/v1/users/me/", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401
    assert single_error(response) == {
        "type": "client_error",
        "code": "token_not_valid",
        "detail": "The access token is invalid, expired or revoked.",
        "attr": None,
    }
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_caller_without_permission_gets_a_403(user_client: APIClient) -> None:
    response = user_client.get("/api/v1/users/")

    assert response.status_code == 403
    assert single_error(response) == {
        "type": "client_error",
        "code": "permission_denied",
        "detail": "You do not have permission to perform this action.",
        "attr": None,
    }


@pytest.mark.parametrize(
    "path", ["/api/v1/no-such-thing/", "/api/v2/users/", "/api/", "/o/no-such-endpoint/"]
)
def test_unknown_api_path_is_a_404_in_the_error_shape(api_client: APIClient, path: str) -> None:
    response = api_client.get(path)

    assert response.status_code == 404
    assert single_error(response) == {
        "type": "client_error",
        "code": "not_found",
        "detail": "Not found.",
        "attr": None,
    }


def test_unknown_object_is_a_404(staff_client: APIClient) -> None:
    response = staff_client.get("/api/v1/users/00000000-0000-0000-0000-000000000000/")

    assert response.status_code == 404
    assert single_error(response)["code"] == "not_found"


def test_unknown_api_path_is_json_even_in_debug_mode(api_client: APIClient, settings: Any) -> None:
    settings.DEBUG = True

    response = api_client.get("/api/v1/no-such-thing/")

    assert response.status_code == 404
    assert single_error(response)["code"] == "not_found"


def test_unsupported_method_is_a_405(user_client: APIClient) -> None:
    response = user_client.post("/api/v1/users/me/", {}, format="json")

    assert response.status_code == 405
    assert single_error(response)["code"] == "method_not_allowed"


def test_unsupported_method_on_health_is_a_405_in_the_error_shape(api_client: APIClient) -> None:
    response = api_client.post("/health/live")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert single_error(response)["code"] == "method_not_allowed"


def test_unsupported_media_type_is_a_415(user_client: APIClient) -> None:
    response = user_client.generic("PATCH", "/api/v1/users/me/", "display_name=x", content_type="text/plain")

    assert response.status_code == 415
    assert single_error(response)["code"] == "unsupported_media_type"


def test_too_many_requests_is_a_429_with_retry_after(user_client: APIClient, settings: Any) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "2/minute"}}

    statuses = [user_client.get("/api/v1/users/me/").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    response = user_client.get("/api/v1/users/me/")
    assert 0 < int(response["Retry-After"]) <= 60
    assert single_error(response)["code"] == "throttled"


def explode(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("internal detail hunter2")


def test_unexpected_failure_is_a_500_without_details(user: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_views, "MeSerializer", explode)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)

    response = client.get("/api/v1/users/me/")

    assert response.status_code == 500
    assert single_error(response) == {
        "type": "server_error",
        "code": "error",
        "detail": "Server Error (500)",
        "attr": None,
    }
    assert b"hunter2" not in response.content


def test_browser_gets_an_html_404_page(client: Client) -> None:
    response = client.get("/no-such-page/", HTTP_ACCEPT="text/html")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Not found." in response.content


def test_json_client_gets_a_json_404_outside_the_api(client: Client) -> None:
    response = client.get("/no-such-page/", HTTP_ACCEPT="application/json")

    assert response.status_code == 404
    assert single_error(response)["code"] == "not_found"


def test_unexpected_failure_outside_drf_is_a_500_in_the_error_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("config.health.JsonResponse", explode)
    client = Client(raise_request_exception=False)

    response = client.get("/health/live")

    assert response.status_code == 500
    assert single_error(response) == {
        "type": "server_error",
        "code": "error",
        "detail": "Server Error (500).",
        "attr": None,
    }
    assert b"hunter2" not in response.content


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/o/token/", {"grant_type": "refresh_token", "refresh_token": "unknown", "client_id": "nobody"}),
        ("/_allauth/app/v1/auth/login", {"username": "nobody"}),
    ],
)
def test_reshaped_error_bodies_carry_their_own_content_length(
    client: Client, path: str, data: dict[str, str]
) -> None:
    """The OAuth and allauth error bodies are rewritten after CommonMiddleware set the length: a
    real HTTP client reads exactly `Content-Length` bytes, so the header must follow the body."""
    content_type = "application/json" if path.startswith("/_allauth/") else None
    response = client.post(path, data, content_type=content_type) if content_type else client.post(path, data)

    assert response.status_code in {400, 401}
    assert "errors" in response.json()
    assert "type" in response.json()
    assert int(response["Content-Length"]) == len(response.content)
