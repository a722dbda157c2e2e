"""The MFA requirement on the API: staff without a second factor get 403 `mfa_enrollment_required`
for everything but reading `me`, with real credentials (docs/decisions/0012-mfa-and-step-up.md).

`APIClient.force_authenticate` bypasses the authentication classes that enforce the requirement,
so every caller here holds a real JWT, OAuth access token or session.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, set_token_value
from rest_framework.test import APIClient

from accounts.exceptions import MFAEnrollmentRequired
from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, totp_code, totp_enrol
from accounts.tests.headless import APP, app_post, verified_user, with_step_headroom
from accounts.tests.headless import signed_in_meta as sign_in
from oauth_provider.services import application_create

# The cached copy of a user is dropped when a commit adds a factor: these tests really commit.
pytestmark = pytest.mark.django_db(transaction=True)

MFA_ENROLLMENT_REQUIRED = {
    "type": "client_error",
    "errors": [
        {"code": "mfa_enrollment_required", "detail": MFAEnrollmentRequired.default_detail, "attr": None}
    ],
}


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def authenticated_operations() -> list[tuple[str, str]]:
    """Every (method, path) of the API schema that authenticates its caller."""
    schema = APIClient().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in {"get", "post", "put", "patch", "delete"} and operation.get("security") != [{}]:
                operations.append((method, path))
    return operations


def call(client: APIClient, method: str, path: str) -> Any:
    concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
    return getattr(client, method)(concrete, {}, format="json")


@pytest.mark.parametrize(
    "make_user",
    [
        lambda: verified_user("moderator"),
        lambda: verified_user("admin"),
        lambda: verified_user(is_staff=True),
    ],
    ids=["moderator", "admin", "is_staff"],
)
def test_staff_without_a_second_factor_get_403_everywhere_but_reading_me(
    make_user: Callable[[], User],
) -> None:
    user = make_user()
    api = bearer(sign_in(user)["access_token"])
    operations = authenticated_operations()
    assert len(operations) > 30  # the whole API, not a handful

    refused = {
        (method, path): call(api, method, path)
        for method, path in operations
        if (method, path) != ("get", "/api/v1/users/me/")
    }

    assert {key: response.status_code for key, response in refused.items()} == dict.fromkeys(refused, 403)
    assert all(response.json() == MFA_ENROLLMENT_REQUIRED for response in refused.values())
    me = api.get("/api/v1/users/me/")
    assert me.status_code == 200
    assert (
        me.json()["username"],
        me.json()["mfa_required"],
        me.json()["has_mfa"],
        me.json()["mfa_factors"],
    ) == (
        user.username,
        True,
        False,
        [],
    )
    assert api.head("/api/v1/users/me/").status_code == 200


def test_a_staff_member_enrols_through_the_headless_api_and_the_same_jwt_then_works() -> None:
    moderator = verified_user("moderator")
    meta = sign_in(moderator)
    api, session_token, client = bearer(meta["access_token"]), meta["session_token"], Client()
    assert api.get("/api/v1/sessions/").status_code == 403

    offered = client.get(f"{APP}/account/authenticators/totp", headers={"X-Session-Token": session_token})
    assert offered.status_code == 404
    secret = offered.json()["meta"]["secret"]
    reauthenticated = app_post(client, "/auth/reauthenticate", {"password": DEFAULT_PASSWORD}, session_token)
    assert reauthenticated.status_code == 200, reauthenticated.content
    with_step_headroom()
    activated = app_post(client, "/account/authenticators/totp", {"code": totp_code(secret)}, session_token)
    assert activated.status_code == 200, activated.content

    sessions = api.get("/api/v1/sessions/")

    assert sessions.status_code == 200
    me = api.get("/api/v1/users/me/").json()
    assert (me["mfa_required"], me["has_mfa"], me["mfa_factors"]) == (True, True, ["totp"])


def test_a_plain_user_without_a_second_factor_is_unaffected() -> None:
    api = bearer(sign_in(verified_user())["access_token"])

    assert api.get("/api/v1/sessions/").status_code == 200
    me = api.get("/api/v1/users/me/").json()
    assert (me["mfa_required"], me["has_mfa"]) == (False, False)


def test_staff_with_a_second_factor_use_the_api() -> None:
    admin = verified_user("admin")
    secret = totp_enrol(admin)
    api = bearer(sign_in(admin, secret)["access_token"])

    assert api.get("/api/v1/users/").status_code == 200
    assert api.get("/api/v1/sessions/").status_code == 200


def test_the_setting_names_the_roles_that_must_have_a_second_factor(settings: Any) -> None:
    settings.ACCOUNTS_MFA_REQUIRED_ROLES = ["user"]
    settings.ACCOUNTS_MFA_REQUIRED_FOR_STAFF = False
    plain = bearer(sign_in(verified_user())["access_token"])

    assert plain.get("/api/v1/sessions/").json() == MFA_ENROLLMENT_REQUIRED
    assert plain.get("/api/v1/users/me/").json()["mfa_required"] is True

    settings.ACCOUNTS_MFA_REQUIRED_ROLES = []
    moderator = bearer(sign_in(verified_user("moderator"))["access_token"])

    assert moderator.get("/api/v1/sessions/").status_code == 200
    assert moderator.get("/api/v1/users/me/").json()["mfa_required"] is False
    assert plain.get("/api/v1/sessions/").status_code == 200


def test_the_staff_flag_alone_requires_a_second_factor_unless_turned_off(settings: Any) -> None:
    api = bearer(sign_in(verified_user(is_staff=True))["access_token"])
    assert api.get("/api/v1/sessions/").status_code == 403

    settings.ACCOUNTS_MFA_REQUIRED_FOR_STAFF = False

    assert api.get("/api/v1/sessions/").status_code == 200


def test_an_oauth_access_token_of_staff_without_a_second_factor_is_refused_too() -> None:
    moderator = verified_user("moderator")
    application = application_create(
        name="Photo printer", owner=None, redirect_uris="https://printer.example/callback"
    ).application
    access = get_access_token_model()(
        user=moderator,
        application=application,
        expires=timezone.now() + timedelta(minutes=10),
        scope="openid users:read",
    )
    set_token_value(access, "oauth-access-enforcement")
    access.save()
    api = bearer("oauth-access-enforcement")

    assert api.get("/api/v1/sessions/").json() == MFA_ENROLLMENT_REQUIRED
    assert api.get("/api/v1/users/me/").status_code == 200


def test_a_browser_session_of_staff_without_a_second_factor_is_refused_too() -> None:
    moderator = verified_user("moderator")
    browser = APIClient()
    browser.force_login(moderator)  # a real session cookie, read by the session authentication

    assert browser.get("/api/v1/sessions/").json() == MFA_ENROLLMENT_REQUIRED
    assert browser.patch("/api/v1/users/me/", {"description": "x"}, format="json").status_code == 403
    assert browser.get("/api/v1/users/me/").status_code == 200
    assert User.objects.get(pk=moderator.pk).description == ""


@pytest.mark.parametrize("has_factor", [True, False], ids=["with-totp", "without"])
def test_the_jwt_hot_path_checks_the_requirement_without_a_database_query(
    has_factor: bool, django_assert_num_queries: Callable[..., Any]
) -> None:
    moderator = verified_user("moderator")
    secret = totp_enrol(moderator) if has_factor else None
    api = bearer(sign_in(moderator, secret)["access_token"])
    assert api.get("/api/v1/users/me/").status_code == 200  # warms the cache

    with django_assert_num_queries(0):
        response = api.put("/api/v1/users/me/", {}, format="json")

    # Authenticated, then the 405 of a method `me` does not offer, or the requirement's 403:
    # either way authentication read no table.
    assert response.status_code == (405 if has_factor else 403)
