"""The policy matrix: every role, every action and every kind of target, over HTTP, and the same
rules answering the Django admin's `has_perm(permission, obj)`."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from rest_framework.test import APIClient

from accounts.models import Role, User
from accounts.policies import policy_allows
from accounts.services.moderation import user_block, user_set_roles
from accounts.tests.factories import UserFactory, mark_reauthenticated, totp_enrol
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ACTOR_ROLES = ("admin", "moderator", "tester", "user")
TARGETS = ("admin", "moderator", "plain", "self")

# action -> (HTTP method, path under /api/v1/users/{id}/, body, status when allowed)
ACTIONS: dict[str, tuple[str, str, dict[str, Any] | None, int]] = {
    "retrieve": ("get", "", None, 200),
    "update": ("patch", "", {"description": "Changed."}, 200),
    "roles": ("put", "roles/", {"roles": ["__current__", "tester"]}, 200),
    "deactivate": ("post", "deactivate/", {"reason": "Spam."}, 200),
    "reactivate": ("post", "reactivate/", None, 200),
    "lock_down": ("post", "lock-down/", {"reason": "Compromised."}, 200),
    "sign_out_everywhere": ("post", "sign-out-everywhere/", None, 200),
    "send_password_reset": ("post", "send-password-reset/", None, 202),
    "resend_verification": ("post", "resend-verification/", None, 202),
    "verify_email": ("post", "verify-email/", None, 200),
    "change_email": ("post", "change-email/", {"email": "changed@example.org", "verified": True}, 200),
    "reset_mfa": ("post", "reset-mfa/", None, 200),
    "block": ("post", "block/", None, 204),
}
STAFF_ACTIONS = {
    "deactivate",
    "reactivate",
    "lock_down",
    "sign_out_everywhere",
    "send_password_reset",
    "resend_verification",
    "verify_email",
    "change_email",
    "reset_mfa",
}
# Sensitive actions: they also need a recent re-authentication of the caller (step-up, 0012).
STEP_UP_ACTIONS = {"roles", "lock_down", "change_email", "reset_mfa"}


def expected_status(actor_role: str, target: str, action: str) -> int:
    """What the policies promise (docs/decisions/0008-roles-and-policies.md)."""
    allowed = ACTIONS[action][3]
    is_self = target == "self"
    if action == "retrieve":
        return allowed
    if action == "block":
        return 400 if is_self else allowed  # block_self
    if actor_role == "admin":
        if is_self and action in {"deactivate", "lock_down", "change_email", "reset_mfa"}:
            return 400  # cannot_target_self
        return allowed
    if action == "update" and is_self:
        return allowed
    if action == "reactivate" and not is_self and actor_role not in ("admin", "moderator"):
        return 404  # deactivated users are hidden from everyone but staff
    if actor_role == "moderator":
        if action == "roles":
            return 403
        plain = target == "plain"
        if action == "update" or action in STAFF_ACTIONS:
            return allowed if plain else 403
    return 403


def make_user(role: str, **fields: Any) -> User:
    user = UserFactory.create(**fields)
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=False)
    if role in ("admin", "moderator", "tester"):
        user_set_roles(user=user, roles=[role])
    return user


MATRIX = [
    (actor_role, target, action) for actor_role in ACTOR_ROLES for target in TARGETS for action in ACTIONS
]


def expected_status_without_step_up(actor_role: str, target: str, action: str) -> int:
    """A caller who did not re-authenticate: the same refusals, and 401 where they could act."""
    expected = expected_status(actor_role, target, action)
    if action in STEP_UP_ACTIONS and expected not in (403, 404):
        return 401  # before the service's own checks (cannot_target_self) are reached
    return expected


def call_action(client: APIClient, actor_role: str, target: str, action: str) -> dict[str, Any]:
    """Make the actor and target, call the action; what the matrix tests check."""
    actor = make_user(actor_role)
    target_user = actor if target == "self" else make_user("user" if target == "plain" else target)
    if action == "reactivate" and target != "self":
        User.objects.filter(pk=target_user.pk).update(is_active=False)
    method, suffix, body, _ = ACTIONS[action]
    if body is not None and body.get("roles") == ["__current__", "tester"]:
        body = {"roles": [*target_user.roles, "tester"]}
    if action == "reset_mfa":
        totp_enrol(target_user)

    def state() -> tuple[dict[str, Any], list[str]]:
        factors = Authenticator.objects.filter(user=target_user).values_list("type", flat=True)
        return User.objects.values().get(pk=target_user.pk), sorted(factors)

    before = state()
    events_before = AuditEvent.objects.count()
    client.force_authenticate(actor)

    response = getattr(client, method)(f"/api/v1/users/{target_user.pk}/{suffix}", body, format="json")

    return {
        "response": response,
        "changed": state() != before,
        "new_events": AuditEvent.objects.count() - events_before,
    }


def assert_refused_without_change(outcome: dict[str, Any], codes: set[str]) -> None:
    body_json = outcome["response"].json()
    assert body_json["type"] in {"client_error", "validation_error"}
    assert body_json["errors"][0]["code"] in codes
    assert outcome["changed"] is False
    assert outcome["new_events"] == 0


@pytest.mark.parametrize(("actor_role", "target", "action"), MATRIX)
def test_policy_matrix_over_http(actor_role: str, target: str, action: str) -> None:
    client = APIClient()
    mark_reauthenticated(client)  # the step-up is tested on its own below

    outcome = call_action(client, actor_role, target, action)

    expected = expected_status(actor_role, target, action)
    assert outcome["response"].status_code == expected, outcome["response"].content
    if expected >= 400:
        assert_refused_without_change(
            outcome, {"permission_denied", "not_found", "cannot_target_self", "block_self"}
        )


STEP_UP_MATRIX = [
    (actor_role, target, action) for actor_role, target, action in MATRIX if action in STEP_UP_ACTIONS
]


@pytest.mark.parametrize(("actor_role", "target", "action"), STEP_UP_MATRIX)
def test_policy_matrix_without_a_reauthentication(actor_role: str, target: str, action: str) -> None:
    outcome = call_action(APIClient(), actor_role, target, action)

    expected = expected_status_without_step_up(actor_role, target, action)
    response = outcome["response"]
    assert response.status_code == expected, response.content
    if expected == 401:
        assert response.json()["errors"][0]["code"] == "reauthentication_required"
        assert response["WWW-Authenticate"] == (
            'Bearer error="insufficient_user_authentication", '
            'error_description="A more recent authentication is required", max_age="600"'
        )
    assert_refused_without_change(outcome, {"permission_denied", "not_found", "reauthentication_required"})


@pytest.mark.parametrize("actor_role", ACTOR_ROLES)
def test_only_staff_list_users(actor_role: str) -> None:
    client = APIClient()
    client.force_authenticate(make_user(actor_role))

    response = client.get("/api/v1/users/")

    assert response.status_code == (200 if actor_role in ("admin", "moderator") else 403)


def test_anonymous_callers_get_401_everywhere(api_client: APIClient) -> None:
    target = make_user("user")

    for method, suffix, body, _ in ACTIONS.values():
        response = getattr(api_client, method)(f"/api/v1/users/{target.pk}/{suffix}", body, format="json")
        assert response.status_code == 401, suffix
        assert response.json()["errors"][0]["code"] == "not_authenticated"
    assert api_client.get("/api/v1/users/").status_code == 401
    assert api_client.get("/api/v1/users/me/").status_code == 401


@pytest.mark.parametrize("viewer_role", ACTOR_ROLES)
def test_a_blocked_viewer_gets_404_for_the_blocker_unless_staff(viewer_role: str) -> None:
    blocker = make_user("user")
    viewer = make_user(viewer_role)
    user_block(blocker=blocker, blocked=viewer)
    client = APIClient()
    client.force_authenticate(viewer)

    response = client.get(f"/api/v1/users/{blocker.pk}/")

    if viewer_role in ("admin", "moderator"):
        assert response.status_code == 200
    else:
        assert response.status_code == 404
        assert response.json() == {
            "type": "client_error",
            "errors": [{"code": "not_found", "detail": "Not found.", "attr": None}],
        }


@pytest.mark.parametrize(
    ("actor_role", "target", "permission", "allowed"),
    [
        ("admin", "admin", "accounts.change_user", True),
        ("moderator", "admin", "accounts.change_user", False),
        ("moderator", "moderator", "accounts.change_user", False),
        ("moderator", "plain", "accounts.change_user", True),
        ("moderator", "admin", "accounts.view_user", True),
        ("moderator", "plain", "accounts.assign_roles", False),
        ("moderator", "plain", "accounts.lock_down_user", True),
        ("user", "plain", "accounts.view_user", False),
        ("user", "plain", "accounts.view_user_profile", True),
        ("user", "self", "accounts.change_user", True),
        ("user", "self", "accounts.view_user", True),
        ("user", "plain", "accounts.deactivate_user", False),
        ("tester", "plain", "accounts.change_user", False),
    ],
)
def test_the_admin_asks_the_same_rules(actor_role: str, target: str, permission: str, allowed: bool) -> None:
    actor = make_user(actor_role)
    target_user = actor if target == "self" else make_user("user" if target == "plain" else target)

    assert actor.has_perm(permission, target_user) is allowed
    assert policy_allows(actor, permission, target_user) is allowed


@pytest.mark.parametrize("actor_role", ACTOR_ROLES)
def test_unknown_permissions_are_denied_even_to_admins(actor_role: str) -> None:
    actor = make_user(actor_role)

    assert policy_allows(actor, "accounts.launch_rockets") is False
    assert policy_allows(actor, "accounts.launch_rockets", actor) is False


def test_an_inactive_admin_is_allowed_nothing() -> None:
    admin = make_user("admin")
    target = make_user("user")
    admin.is_active = False

    assert policy_allows(admin, "accounts.change_user", target) is False
    assert policy_allows(admin, "accounts.list_users") is False


def test_roles_are_listed_in_order_with_user_always_kept() -> None:
    user = make_user("user")

    user_set_roles(user=user, roles=[Role.TESTER, Role.MODERATOR])

    assert user.roles == ["moderator", "tester", "user"]
    assert (user.is_staff, user.is_superuser) == (True, False)
