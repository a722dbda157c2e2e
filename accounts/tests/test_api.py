"""The users resource over HTTP: `me`, public profiles, blocks, and the staff list and actions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from rest_framework.test import APIClient

from accounts.models import DeviceSession, Membership, Organization, User, UserBlock
from accounts.services import device_session_start
from accounts.services.moderation import user_block, user_set_roles
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, mark_reauthenticated, totp_enrol
from audit.models import AuditEvent
from oauth_provider.models import Application

pytestmark = pytest.mark.django_db


def iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z")


def verified_user(role: str | None = None, **fields: Any) -> User:
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    if role is not None:
        user_set_roles(user=user, roles=[role])
    return user


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def admin() -> User:
    return verified_user("admin")


@pytest.fixture
def moderator() -> User:
    return verified_user("moderator")


@pytest.fixture
def admin_client(admin: User) -> APIClient:
    return client_for(admin)


@pytest.fixture
def reauthenticated_admin_client(admin: User) -> APIClient:
    """An admin who just re-authenticated: sensitive actions need it (step-up, 0012)."""
    client = client_for(admin)
    mark_reauthenticated(client)
    return client


def last_event(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).order_by("-id").first()  # type: ignore[return-value]


# --- me -----------------------------------------------------------------------------------------


def test_me_returns_the_callers_record_with_roles_and_organizations(user: User) -> None:
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    organization = Organization.objects.create(name="Acme", slug="acme")
    Membership.objects.create(organization=organization, user=user, role="admin")
    totp_enrol(user)

    response = client_for(user).get("/api/v1/users/me/")

    assert response.status_code == 200
    assert response.json() == {
        "id": str(user.id),
        "username": user.username,
        "display_name": user.username,
        "email": user.email,
        "email_verified": True,
        "description": "",
        "roles": ["user"],
        "has_mfa": True,
        "mfa_factors": ["totp"],
        "mfa_required": False,
        "organizations": [{"id": str(organization.id), "name": "Acme", "slug": "acme", "role": "admin"}],
        "is_active": True,
        "last_login": None,
        "created_at": iso(user.created_at),
    }


def test_me_updates_display_name_and_description_and_audits_it(user: User) -> None:
    new_display_name = user.username.upper().replace("_", " ")

    response = client_for(user).patch(
        "/api/v1/users/me/", {"display_name": new_display_name, "description": "Hello."}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["display_name"] == new_display_name
    user.refresh_from_db()
    assert (user.display_name, user.description) == (new_display_name, "Hello.")
    event = last_event("accounts.user.updated")
    assert event.actor_id == str(user.pk)
    assert event.changes == {
        "display_name": [user.username, new_display_name],
        "description": ["", "Hello."],
    }


def test_me_renames_and_the_display_name_follows(user: User) -> None:
    response = client_for(user).patch("/api/v1/users/me/", {"username": "New_Name"}, format="json")

    assert response.status_code == 200
    assert (response.json()["username"], response.json()["display_name"]) == ("new_name", "new_name")
    user.refresh_from_db()
    assert (user.username, user.display_name) == ("new_name", "new_name")


def test_me_renames_with_a_matching_display_name(user: User) -> None:
    response = client_for(user).patch(
        "/api/v1/users/me/", {"username": "ada_lovelace", "display_name": "Ada Lovelace"}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["username"], response.json()["display_name"]) == ("ada_lovelace", "Ada Lovelace")


@pytest.mark.parametrize(
    ("body", "attr", "code"),
    [
        ({"username": "ab"}, "username", "username_too_short"),
        ({"username": "no-dashes"}, "username", "username_invalid_characters"),
        ({"username": "x" * 33}, "username", "max_length"),
        ({"display_name": "Someone Else"}, "display_name", "display_name_mismatch"),
        ({"username": "ada_l", "display_name": "Ada"}, "display_name", "display_name_mismatch"),
        ({"description": "x" * 257}, "description", "max_length"),
    ],
)
def test_me_refuses_invalid_profiles_and_changes_nothing(
    user: User, body: dict[str, Any], attr: str, code: str
) -> None:
    before = User.objects.values().get(pk=user.pk)

    response = client_for(user).patch("/api/v1/users/me/", body, format="json")

    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert {"attr": attr, "code": code} in [
        {"attr": error["attr"], "code": error["code"]} for error in response.json()["errors"]
    ]
    assert User.objects.values().get(pk=user.pk) == before


def test_me_refuses_a_taken_username(user: User) -> None:
    UserFactory.create(username="taken_name")

    response = client_for(user).patch("/api/v1/users/me/", {"username": "taken_name"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": "unique", "detail": "This username is taken.", "attr": "username"}
    ]


@pytest.mark.parametrize(
    "field", ["is_staff", "is_superuser", "is_active", "roles", "email", "email_verified", "id", "groups"]
)
def test_me_refuses_protected_fields_and_changes_nothing(user: User, field: str) -> None:
    before = User.objects.values().get(pk=user.pk)
    groups_before = list(user.groups.values_list("name", flat=True))

    response = client_for(user).patch(
        "/api/v1/users/me/",
        {field: True if field != "roles" else ["admin"], "description": "x"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "type": "validation_error",
        "errors": [
            {"code": "read_only_field", "detail": "This field cannot be changed here.", "attr": field}
        ],
    }
    assert User.objects.values().get(pk=user.pk) == before
    assert list(user.groups.values_list("name", flat=True)) == groups_before


def test_me_refuses_unknown_fields(user: User) -> None:
    response = client_for(user).patch("/api/v1/users/me/", {"favourite_colour": "blue"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"code": "unknown_field", "detail": "Unknown field.", "attr": "favourite_colour"}
    ]


def test_me_answers_405_for_put(user: User) -> None:
    response = client_for(user).put("/api/v1/users/me/", {}, format="json")

    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


# --- public profiles and blocks -----------------------------------------------------------------


def test_a_user_reads_another_users_public_profile_only(user: User) -> None:
    other = verified_user(description="Hi there.")

    response = client_for(user).get(f"/api/v1/users/{other.pk}/")

    assert response.status_code == 200
    assert response.json() == {
        "id": str(other.pk),
        "username": other.username,
        "display_name": other.display_name,
        "description": "Hi there.",
        "created_at": iso(other.created_at),
    }


def test_a_deactivated_user_is_a_404_to_users_but_not_to_staff(user: User, moderator: User) -> None:
    other = verified_user(is_active=False)

    assert client_for(user).get(f"/api/v1/users/{other.pk}/").status_code == 404
    assert client_for(moderator).get(f"/api/v1/users/{other.pk}/").json()["is_active"] is False


def test_an_unknown_or_malformed_id_is_a_404(user: User) -> None:
    client = client_for(user)

    assert client.get("/api/v1/users/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert client.get("/api/v1/users/12/").json()["errors"][0]["code"] == "not_found"


def test_blocking_hides_the_blocker_and_unblocking_shows_them_again(user: User) -> None:
    other = verified_user()
    client = client_for(user)

    assert client.post(f"/api/v1/users/{other.pk}/block/").status_code == 204
    assert client.post(f"/api/v1/users/{other.pk}/block/").status_code == 204  # idempotent
    assert UserBlock.objects.filter(blocker=user, blocked=other).count() == 1
    assert client_for(other).get(f"/api/v1/users/{user.pk}/").status_code == 404
    assert client.get(f"/api/v1/users/{other.pk}/").status_code == 200  # the blocker still sees them
    assert last_event("accounts.user.blocked").target_id == str(other.pk)

    assert client.delete(f"/api/v1/users/{other.pk}/block/").status_code == 204
    assert client_for(other).get(f"/api/v1/users/{user.pk}/").status_code == 200
    assert last_event("accounts.user.unblocked").target_id == str(other.pk)


def test_blocking_yourself_is_refused(user: User) -> None:
    response = client_for(user).post(f"/api/v1/users/{user.pk}/block/")

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "block_self"
    assert not UserBlock.objects.exists()


def test_you_can_unblock_someone_who_blocked_you_back(user: User) -> None:
    other = verified_user()
    user_block(blocker=user, blocked=other)
    user_block(blocker=other, blocked=user)

    response = client_for(user).delete(f"/api/v1/users/{other.pk}/block/")

    assert response.status_code == 204
    assert not UserBlock.objects.filter(blocker=user).exists()
    assert UserBlock.objects.filter(blocker=other, blocked=user).exists()


def test_blocking_someone_who_blocked_you_is_a_404(user: User) -> None:
    other = verified_user()
    user_block(blocker=other, blocked=user)

    response = client_for(user).post(f"/api/v1/users/{other.pk}/block/")

    assert response.status_code == 404
    assert not UserBlock.objects.filter(blocker=user).exists()


def test_me_lists_the_users_i_blocked_newest_first(user: User) -> None:
    first, second = verified_user(), verified_user()
    user_block(blocker=user, blocked=first)
    user_block(blocker=user, blocked=second)
    UserBlock.objects.filter(blocked=first).update(created_at=timezone.now() - timedelta(days=1))

    response = client_for(user).get("/api/v1/users/me/blocked-users/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [item["user"]["username"] for item in body["results"]] == [second.username, first.username]
    assert set(body["results"][0]) == {"user", "blocked_at"}


# --- staff list ---------------------------------------------------------------------------------


def test_staff_list_shows_the_staff_record(admin_client: APIClient, admin: User) -> None:
    user = verified_user()
    SocialAccount.objects.create(user=user, provider="github", uid="42")
    SocialAccount.objects.create(user=user, provider="google", uid="43")

    response = admin_client.get(f"/api/v1/users/?search={user.username}")

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "id": str(user.pk),
            "username": user.username,
            "display_name": user.username,
            "email": user.email,
            "email_verified": True,
            "description": "",
            "roles": ["user"],
            "is_active": True,
            "deactivation_reason": "",
            "has_mfa": False,
            "mfa_factors": [],
            "social_providers": ["github", "google"],
            "last_login": None,
            "created_at": iso(user.created_at),
            "deleted_at": None,
        }
    ]


def test_staff_list_pages(admin_client: APIClient) -> None:
    UserFactory.create_batch(3)

    response = admin_client.get("/api/v1/users/?page_size=2")

    body = response.json()
    assert body["count"] == 4
    assert len(body["results"]) == 2
    assert body["next"].endswith("/api/v1/users/?page=2&page_size=2")


def test_staff_list_searches_username_email_and_display_name(admin_client: APIClient) -> None:
    ada = UserFactory.create(username="ada_lovelace", display_name="Ada Lovelace", email="ada@math.example")
    UserFactory.create(username="charles", email="cb@engines.example")
    grace = UserFactory.create(username="grace", email="grace@MATH.example")

    def found(term: str) -> set[str]:
        return {
            item["username"]
            for item in admin_client.get("/api/v1/users/", {"search": term}).json()["results"]
        }

    assert found("LOVELACE") == {ada.username}
    assert found("math.EXAMPLE") == {ada.username, grace.username}
    assert found("ada love") == {ada.username}
    assert found("nobody") == set()


def test_staff_list_filters(admin_client: APIClient, admin: User) -> None:
    verified = verified_user()
    unverified = UserFactory.create()
    EmailAddress.objects.create(user=unverified, email=unverified.email, primary=True, verified=False)
    inactive = verified_user(is_active=False)
    with_mfa = verified_user()
    Authenticator.objects.create(user=with_mfa, type=Authenticator.Type.TOTP, data={})
    only_recovery = verified_user()
    Authenticator.objects.create(user=only_recovery, type=Authenticator.Type.RECOVERY_CODES, data={})
    tester = verified_user("tester")
    social = verified_user()
    SocialAccount.objects.create(user=social, provider="github", uid="7")
    old = verified_user()
    User.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))

    def found(**params: str) -> set[str]:
        response = admin_client.get("/api/v1/users/", params)
        assert response.status_code == 200, response.content
        return {item["username"] for item in response.json()["results"]}

    everyone = {
        u.username
        for u in (admin, verified, unverified, inactive, with_mfa, only_recovery, tester, social, old)
    }
    assert found(role="tester") == {tester.username}
    assert found(role="admin") == {admin.username}
    assert found(is_active="false") == {inactive.username}
    assert found(email_verified="false") == {unverified.username}
    assert found(email_verified="true") == everyone - {unverified.username}
    assert found(has_mfa="true") == {with_mfa.username}
    assert with_mfa.username not in found(has_mfa="false")
    assert only_recovery.username in found(has_mfa="false")
    assert found(social_provider="github") == {social.username}
    cutoff = iso(timezone.now() - timedelta(days=1))
    assert found(created_before=cutoff) == {old.username}
    assert old.username not in found(created_after=cutoff)
    assert found(role="tester", is_active="true") == {tester.username}


@pytest.mark.parametrize(
    ("params", "code", "attr"),
    [
        ({"role": "emperor"}, "invalid_choice", "role"),
        ({"is_active": "perhaps"}, "invalid_choice", "is_active"),
        ({"has_mfa": "yes"}, "invalid_choice", "has_mfa"),
        ({"created_after": "yesterday"}, "invalid", "created_after"),
        ({"ordering": "password"}, "invalid_choice", "ordering"),
    ],
)
def test_staff_list_refuses_bad_filters(
    admin_client: APIClient, params: dict[str, str], code: str, attr: str
) -> None:
    response = admin_client.get("/api/v1/users/", params)

    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"
    assert response.json()["errors"][0]["code"] == code
    assert response.json()["errors"][0]["attr"] == attr


def test_staff_list_orders(admin_client: APIClient, admin: User) -> None:
    zed = UserFactory.create(username="zed")
    amy = UserFactory.create(username="amy")
    User.objects.filter(pk=zed.pk).update(last_login=timezone.now())
    User.objects.filter(pk=amy.pk).update(last_login=timezone.now() - timedelta(hours=1))

    def order(ordering: str) -> list[str]:
        results = admin_client.get("/api/v1/users/", {"ordering": ordering}).json()["results"]
        return [item["username"] for item in results]

    assert order("username") == sorted([admin.username, "amy", "zed"])
    assert order("-username") == sorted([admin.username, "amy", "zed"], reverse=True)
    assert order("-created_at")[:2] == ["amy", "zed"]
    assert order("-last_login") == ["zed", "amy", admin.username]  # never signed in: last
    assert order("last_login") == [admin.username, "amy", "zed"]  # never signed in: oldest


def test_staff_list_pages_through_equal_sort_keys_without_repeating_anyone(admin_client: APIClient) -> None:
    UserFactory.create_batch(7)
    User.objects.update(created_at=timezone.now(), last_login=None)

    for ordering in ("created_at", "-created_at", "last_login", "-last_login"):
        seen = []
        for page in (1, 2, 3, 4):
            response = admin_client.get(
                "/api/v1/users/", {"ordering": ordering, "page_size": 2, "page": page}
            )
            seen += [item["id"] for item in response.json()["results"]]
        assert len(seen) == len(set(seen)) == 8, ordering


def test_staff_search_under_three_characters_matches_the_start(admin_client: APIClient) -> None:
    UserFactory.create(username="lisa", email="lisa@example.com")
    UserFactory.create(username="alice", email="alice@example.com")

    found = {
        item["username"] for item in admin_client.get("/api/v1/users/", {"search": "LI"}).json()["results"]
    }

    assert found == {"lisa"}


def test_staff_list_asks_for_a_full_page_even_when_fewer_rows_match(admin_client: APIClient) -> None:
    UserFactory.create(username="unique_person")
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get("/api/v1/users/", {"search": "unique_person"})

    assert response.json()["count"] == 1
    page_query = next(query["sql"] for query in captured.captured_queries if "LIMIT" in query["sql"])
    assert page_query.rstrip().endswith("LIMIT 50")


def _bulk_users(count: int, *, start: int = 0) -> None:
    """Many users with roles, verified addresses and linked accounts, quickly."""
    users = User.objects.bulk_create(
        [
            User(
                username=f"bulk_{index:05d}",
                display_name=f"bulk_{index:05d}",
                email=f"bulk{index}@example.com",
            )
            for index in range(start, start + count)
        ]
    )
    user_group = Group.objects.get(name="user")
    User.groups.through.objects.bulk_create(
        [User.groups.through(user_id=user.pk, group_id=user_group.pk) for user in users]
    )
    EmailAddress.objects.bulk_create(
        [EmailAddress(user=user, email=user.email, primary=True, verified=True) for user in users]
    )
    SocialAccount.objects.bulk_create(
        [SocialAccount(user=user, provider="github", uid=str(user.pk)) for user in users]
    )


def test_staff_list_takes_the_same_number_of_queries_for_10_and_1000_users(
    admin_client: APIClient, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    _bulk_users(10)
    admin_client.get("/api/v1/users/?page_size=200")  # warm-up: session, content types
    with django_assert_max_num_queries(6) as small:
        assert len(admin_client.get("/api/v1/users/?page_size=200").json()["results"]) == 11

    _bulk_users(1000, start=10)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = admin_client.get("/api/v1/users/?page_size=200&search=bulk&email_verified=true")
    assert response.json()["count"] == 1010
    assert len(response.json()["results"]) == 200


# --- staff actions ------------------------------------------------------------------------------


def jwt_for(user: User) -> str:
    _, pair = device_session_start(user=user, user_agent="test", ip_address=None)
    return pair.access_token


def me_with(token: str) -> int:
    return APIClient().get("/api/v1/users/me/", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


@pytest.mark.django_db(transaction=True)
def test_deactivating_stops_the_users_tokens_and_reactivating_lets_them_sign_in_again(client: Client) -> None:
    admin = verified_user("admin")
    target = verified_user()
    token = jwt_for(target)
    assert me_with(token) == 200

    response = client_for(admin).post(
        f"/api/v1/users/{target.pk}/deactivate/", {"reason": "Spam."}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["is_active"], response.json()["deactivation_reason"]) == (False, "Spam.")
    assert me_with(token) == 401
    event = last_event("accounts.user.deactivated")
    assert (event.actor_id, event.target_id, event.metadata["reason"]) == (
        str(admin.pk),
        str(target.pk),
        "Spam.",
    )
    assert event.metadata["revoked"]["device_sessions"] == 1
    sign_in = client.post("/accounts/login/", {"login": target.username, "password": DEFAULT_PASSWORD})
    assert (sign_in.status_code, sign_in["Location"]) == (302, "/accounts/inactive/")
    assert "_auth_user_id" not in client.session

    response = client_for(admin).post(f"/api/v1/users/{target.pk}/reactivate/")

    assert (response.status_code, response.json()["is_active"], response.json()["deactivation_reason"]) == (
        200,
        True,
        "",
    )
    assert last_event("accounts.user.reactivated").target_id == str(target.pk)


@pytest.mark.django_db(transaction=True)
def test_lock_down_revokes_every_session_and_token_in_one_audited_step() -> None:
    admin = verified_user("admin")
    target = verified_user()
    token = jwt_for(target)
    application = Application.objects.create(
        name="Third party",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris="https://app.example/callback",
    )
    access = get_access_token_model().objects.create(
        user=target, application=application, token="opaque-a", expires=timezone.now() + timedelta(minutes=5)
    )
    get_refresh_token_model().objects.create(
        user=target, application=application, token="opaque-r", access_token=access
    )

    staff = client_for(admin)
    mark_reauthenticated(staff)
    response = staff.post(f"/api/v1/users/{target.pk}/lock-down/", {"reason": "Compromised."}, format="json")

    assert response.status_code == 200
    assert response.json()["user"]["is_active"] is False
    assert response.json()["revoked"] == {
        "device_sessions": 1,
        "browser_sessions": 0,
        "oauth_access_tokens": 1,
        "oauth_refresh_tokens": 1,
        "oauth_authorization_codes": 0,
    }
    assert me_with(token) == 401
    assert not DeviceSession.objects.filter(user=target, revoked_at__isnull=True).exists()
    assert not get_access_token_model().objects.filter(user=target).exists()
    assert get_refresh_token_model().objects.get(user=target).revoked is not None
    event = last_event("accounts.user.locked_down")
    assert event.changes == {"is_active": [True, False]}
    assert event.metadata["reason"] == "Compromised."


@pytest.mark.django_db(transaction=True)
def test_sign_out_everywhere_keeps_the_user_active() -> None:
    moderator = verified_user("moderator")
    target = verified_user()
    token = jwt_for(target)

    response = client_for(moderator).post(f"/api/v1/users/{target.pk}/sign-out-everywhere/")

    assert response.status_code == 200
    assert response.json()["revoked"]["device_sessions"] == 1
    assert me_with(token) == 401
    target.refresh_from_db()
    assert target.is_active is True
    assert last_event("accounts.user.signed_out_everywhere").actor_id == str(moderator.pk)


def test_staff_cannot_deactivate_or_lock_down_themselves(
    reauthenticated_admin_client: APIClient, admin: User
) -> None:
    for path in ("deactivate", "lock-down"):
        response = reauthenticated_admin_client.post(f"/api/v1/users/{admin.pk}/{path}/", {}, format="json")
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "cannot_target_self"
    admin.refresh_from_db()
    assert admin.is_active is True


def test_send_password_reset_e_mails_a_working_link(
    admin_client: APIClient, client: Client, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    target = verified_user()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/api/v1/users/{target.pk}/send-password-reset/")

    assert response.status_code == 202
    assert [message.to for message in mail.outbox] == [[target.email]]
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+/", str(mail.outbox[0].body))
    assert link is not None
    page = client.get(
        link.group(0).split("testserver", 1)[-1].replace("http://127.0.0.1:8000", ""), follow=True
    )
    assert page.status_code == 200
    assert b"password1" in page.content
    assert last_event("accounts.user.password_reset_sent").target_id == str(target.pk)


def test_send_password_reset_to_a_deactivated_user_is_refused(admin_client: APIClient) -> None:
    target = verified_user(is_active=False)

    response = admin_client.post(f"/api/v1/users/{target.pk}/send-password-reset/")

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "user_inactive"
    assert mail.outbox == []


def test_resend_verification_and_mark_verified(
    admin_client: APIClient, django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    target = UserFactory.create()
    EmailAddress.objects.create(user=target, email=target.email, primary=True, verified=False)

    with django_capture_on_commit_callbacks(execute=True):
        assert admin_client.post(f"/api/v1/users/{target.pk}/resend-verification/").status_code == 202
    assert [message.to for message in mail.outbox] == [[target.email]]
    assert last_event("accounts.user.verification_resent").target_id == str(target.pk)

    response = admin_client.post(f"/api/v1/users/{target.pk}/verify-email/")

    assert (response.status_code, response.json()["email_verified"]) == (200, True)
    assert EmailAddress.objects.get(user=target).verified is True
    assert last_event("accounts.user.email_marked_verified").changes == {"email_verified": [False, True]}

    response = admin_client.post(f"/api/v1/users/{target.pk}/resend-verification/")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "email_already_verified"


def test_a_user_without_an_address_gets_a_clear_error(admin_client: APIClient) -> None:
    target = UserFactory.create()

    response = admin_client.post(f"/api/v1/users/{target.pk}/verify-email/")

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "no_email_address"


def test_staff_change_a_users_email_address_over_the_api(
    reauthenticated_admin_client: APIClient,
    admin: User,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    target = verified_user(email="lost@example.com")
    verified_user(username="other", email="other@example.com")
    url = f"/api/v1/users/{target.pk}/change-email/"

    taken = reauthenticated_admin_client.post(url, {"email": "OTHER@example.com"}, format="json")
    unknown = reauthenticated_admin_client.post(url, {"email": "a@example.org", "role": "x"}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        changed = reauthenticated_admin_client.post(
            url, {"email": "found@example.org", "reason": "Ticket 12"}, format="json"
        )

    assert taken.status_code == 400
    assert taken.json() == {
        "type": "validation_error",
        "errors": [
            {
                "code": "email_taken",
                "detail": "A user with this e-mail address already exists.",
                "attr": "email",
            }
        ],
    }
    assert (unknown.status_code, unknown.json()["errors"][0]["code"]) == (400, "unknown_field")
    assert changed.status_code == 200, changed.content
    assert (changed.json()["email"], changed.json()["email_verified"]) == ("found@example.org", False)
    assert sorted(message.to[0] for message in mail.outbox) == ["found@example.org", "lost@example.com"]
    event = last_event("accounts.user.email_changed")
    assert (event.actor_id, event.changes, event.metadata) == (
        str(admin.pk),
        {"email": ["lost@example.com", "found@example.org"]},
        {"verified": False, "reason": "Ticket 12"},
    )


def test_admins_set_roles_and_the_staff_flags_follow(reauthenticated_admin_client: APIClient) -> None:
    admin_client = reauthenticated_admin_client
    target = verified_user()

    response = admin_client.put(f"/api/v1/users/{target.pk}/roles/", {"roles": ["moderator"]}, format="json")

    assert response.status_code == 200
    assert response.json()["roles"] == ["moderator", "user"]
    target.refresh_from_db()
    assert (target.is_staff, target.is_superuser) == (True, False)
    assert last_event("accounts.user.roles_changed").changes == {"roles": [["user"], ["moderator", "user"]]}

    response = admin_client.put(f"/api/v1/users/{target.pk}/roles/", {"roles": []}, format="json")
    assert response.json()["roles"] == ["user"]
    target.refresh_from_db()
    assert target.is_staff is False


def test_roles_refuse_unknown_roles_and_self_demotion(
    reauthenticated_admin_client: APIClient, admin: User
) -> None:
    admin_client = reauthenticated_admin_client
    target = verified_user()

    response = admin_client.put(f"/api/v1/users/{target.pk}/roles/", {"roles": ["emperor"]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "invalid_choice"

    response = admin_client.put(f"/api/v1/users/{admin.pk}/roles/", {"roles": ["moderator"]}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "cannot_demote_self"
    assert User.objects.get(pk=admin.pk).is_superuser is True

    response = admin_client.put(f"/api/v1/users/{target.pk}/roles/", {"roles": "admin"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "not_a_list"


def test_staff_update_changes_a_profile_and_audits_the_actor(moderator: User) -> None:
    target = verified_user()

    response = client_for(moderator).patch(
        f"/api/v1/users/{target.pk}/", {"username": "renamed_user", "description": "Cleaned."}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["username"], response.json()["description"]) == ("renamed_user", "Cleaned.")
    event = last_event("accounts.user.updated")
    assert (event.actor_id, event.target_id) == (str(moderator.pk), str(target.pk))


def test_staff_update_refuses_protected_fields(admin_client: APIClient) -> None:
    target = verified_user()
    before = User.objects.values().get(pk=target.pk)

    response = admin_client.patch(
        f"/api/v1/users/{target.pk}/", {"is_staff": True, "roles": ["admin"]}, format="json"
    )

    assert response.status_code == 400
    assert [error["attr"] for error in response.json()["errors"]] == ["is_staff", "roles"]
    assert User.objects.values().get(pk=target.pk) == before


def test_a_user_cannot_touch_another_user(user: User) -> None:
    other = verified_user()
    before = User.objects.values().get(pk=other.pk)
    client = client_for(user)

    assert (
        client.patch(f"/api/v1/users/{other.pk}/", {"description": "Hacked."}, format="json").status_code
        == 403
    )
    assert client.post(f"/api/v1/users/{other.pk}/deactivate/", {}, format="json").status_code == 403
    assert (
        client.put(f"/api/v1/users/{other.pk}/roles/", {"roles": ["admin"]}, format="json").status_code == 403
    )
    assert User.objects.values().get(pk=other.pk) == before


def test_a_moderator_cannot_change_an_admin(moderator: User, admin: User) -> None:
    before = User.objects.values().get(pk=admin.pk)
    client = client_for(moderator)

    response = client.patch(f"/api/v1/users/{admin.pk}/", {"description": "x"}, format="json")

    assert response.status_code == 403
    assert response.json() == {
        "type": "client_error",
        "errors": [
            {
                "code": "permission_denied",
                "detail": "You do not have permission to perform this action.",
                "attr": None,
            }
        ],
    }
    assert client.post(f"/api/v1/users/{admin.pk}/lock-down/", {}, format="json").status_code == 403
    assert User.objects.values().get(pk=admin.pk) == before


def test_the_schema_documents_the_users_resource(api_client: APIClient) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    paths = schema["paths"]
    assert set(paths["/api/v1/users/"]) == {"get"}
    assert set(paths["/api/v1/users/{id}/"]) == {"get", "patch"}
    assert set(paths["/api/v1/users/me/"]) == {"get", "patch", "delete"}
    assert set(paths["/api/v1/users/{id}/block/"]) == {"post", "delete"}
    for action in (
        "deactivate",
        "reactivate",
        "lock-down",
        "sign-out-everywhere",
        "send-password-reset",
        "reset-mfa",
        "change-email",
    ):
        assert set(paths[f"/api/v1/users/{{id}}/{action}/"]) == {"post"}
    assert set(paths["/api/v1/users/{id}/roles/"]) == {"put"}
    # The sensitive actions document the step-up refusal.
    for path, method in (
        ("/api/v1/users/{id}/roles/", "put"),
        ("/api/v1/users/{id}/lock-down/", "post"),
        ("/api/v1/users/{id}/reset-mfa/", "post"),
        ("/api/v1/users/{id}/change-email/", "post"),
        ("/api/v1/users/me/", "delete"),
    ):
        assert "reauthentication_required" in str(paths[path][method]["responses"]["401"]), path
    parameters = {parameter["name"] for parameter in paths["/api/v1/users/"]["get"]["parameters"]}
    assert {
        "search",
        "role",
        "is_active",
        "email_verified",
        "has_mfa",
        "social_provider",
        "ordering",
    } <= parameters
    assert {"400", "401"} <= set(paths["/api/v1/users/me/"]["patch"]["responses"])
    assert {"400", "401", "403", "404"} <= set(paths["/api/v1/users/{id}/"]["patch"]["responses"])


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


def test_methods_the_resource_does_not_offer_are_a_405_not_a_403(user: User, admin_client: APIClient) -> None:
    other = verified_user()

    for client in (client_for(user), admin_client):
        response = client.put(f"/api/v1/users/{other.pk}/", {"description": "x"}, format="json")
        assert response.status_code == 405
        assert response.json()["errors"][0]["code"] == "method_not_allowed"
        assert client.delete(f"/api/v1/users/{other.pk}/").status_code == 405
    assert client_for(user).options(f"/api/v1/users/{other.pk}/").status_code == 200
