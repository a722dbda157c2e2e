"""The HTML pages: landing page, allauth pages in the project's layout, API viewers, the admin."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.test import Client

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, totp_code, totp_enrol

pytestmark = pytest.mark.django_db


def test_landing_page_links_to_sign_in_api_docs_and_admin(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    for link in ('href="/accounts/login/"', 'href="/api/v1/docs/"', 'href="/admin/"'):
        assert link in html


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"])
def test_allauth_pages_use_the_project_layout(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/css/site.css" in html
    assert 'class="site-header"' in html


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_api_viewers_load_nothing_from_other_hosts(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    html = response.content.decode()
    assert re.findall(r'(?:src|href)="(https?://[^"]+)"', html) == []


def test_schema_describes_the_api_in_openapi_3(client: Client) -> None:
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/users/me/" in schema["paths"]
    responses = schema["paths"]["/api/v1/users/me/"]["patch"]["responses"]
    assert sorted(responses) == ["200", "400", "401", "404", "405", "406", "415", "429", "500"]
    error_body = responses["401"]["content"]["application/json"]["schema"]["$ref"]
    assert error_body == "#/components/schemas/ErrorResponse401"


def test_staff_signs_in_to_the_admin(client: Client) -> None:
    staff = UserFactory.create(is_staff=True, is_superuser=True)
    EmailAddress.objects.create(user=staff, email=staff.email, primary=True, verified=True)
    secret = totp_enrol(staff)

    login_page = client.get("/admin/", follow=True)
    password = client.post(
        "/accounts/login/?next=/admin/", {"login": staff.username, "password": DEFAULT_PASSWORD}
    )
    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})

    # The admin's sign-in is allauth's page, with the second factor.
    assert login_page.redirect_chain == [
        ("/admin/login/?next=/admin/", 302),
        ("/accounts/login/?next=%2Fadmin%2F", 302),
    ]
    assert login_page.status_code == 200
    assert password.status_code == 302
    assert password["Location"] == "/accounts/2fa/authenticate/"
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"Users, clients and settings" in index.content
    assert client.get("/admin/accounts/user/").status_code == 200
    assert client.get("/admin/oauth_provider/application/").status_code == 200


def test_non_staff_cannot_enter_the_admin(client: Client) -> None:
    user = UserFactory.create()
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)

    response = client.post(
        "/accounts/login/?next=/admin/", {"login": user.username, "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/login/?next=/admin/").status_code == 403
    assert client.get("/admin/accounts/user/").status_code == 302
