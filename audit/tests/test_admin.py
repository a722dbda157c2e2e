"""The audit trail in the Django admin: read-only, filterable, reached from each user."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import UserFactory, totp_enrol
from audit.models import AuditEvent
from audit.services import audit_record

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "/admin/audit/auditevent/"


def record(action: str, *, actor: Any = None, target: Any = None, request_id: str = "") -> AuditEvent:
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.5")
    request.request_id = request_id  # type: ignore[attr-defined]
    return audit_record(action=action, actor=actor, target=target, request=request)


def listed(response: Any) -> list[AuditEvent]:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def auditor() -> User:
    """Staff with the view permission on audit events, and nothing more (and, as all staff must,
    an authenticator app)."""
    auditor = UserFactory.create(username="auditor", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    totp_enrol(auditor)
    return auditor


@pytest.fixture
def auditor_client(auditor: User) -> Client:
    client = Client()
    client.force_login(auditor)
    return client


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    root = UserFactory.create(username="root", is_staff=True, is_superuser=True)
    totp_enrol(root)
    client.force_login(root)
    return client


@pytest.fixture
def alice() -> User:
    return UserFactory.create(username="alice")


@pytest.fixture
def trail(alice: User) -> dict[str, AuditEvent]:
    bob = UserFactory.create(username="bob")
    return {
        "alice_changes_password": record(
            "accounts.user.password_changed", actor=alice, target=alice, request_id="req-a"
        ),
        "bob_changes_password": record(
            "accounts.user.password_changed", actor=bob, target=bob, request_id="req-b"
        ),
        "alice_deactivates_bob": record(
            "accounts.user.deactivated", actor=alice, target=bob, request_id="req-c"
        ),
        "bob_renames_alice": record(
            "admin.object.changed", actor=bob, target=("accounts.user", str(alice.pk), "alice")
        ),
        "system_prunes": audit_record(action="audit.events.pruned"),
    }


def pks(trail: dict[str, AuditEvent], *names: str) -> list[int]:
    return [trail[name].pk for name in names]


def test_staff_with_the_view_permission_list_events_newest_first(
    auditor_client: Client, auditor: User, trail: dict[str, AuditEvent]
) -> None:
    auditor_signs_in = AuditEvent.objects.get(action="accounts.user.signed_in", actor_id=str(auditor.pk))

    response = auditor_client.get(CHANGELIST_URL)

    assert [event.pk for event in listed(response)] == [
        *(event.pk for event in reversed(trail.values())),
        auditor_signs_in.pk,
    ]
    content = response.content.decode()
    assert "accounts.user.deactivated" in content
    assert 'name="_selected_action"' not in content  # no bulk actions, not even delete
    assert "Add audit event" not in content


def test_staff_open_one_event_read_only(auditor_client: Client, trail: dict[str, AuditEvent]) -> None:
    event = trail["alice_deactivates_bob"]

    response = auditor_client.get(f"{CHANGELIST_URL}{event.pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert str(event.event_id) in content
    assert event.hash in content
    assert 'name="_save"' not in content
    assert 'name="action"' not in content  # shown as text, not as a form field


def test_staff_without_the_view_permission_are_refused(trail: dict[str, AuditEvent]) -> None:
    staff = UserFactory.create(is_staff=True)
    totp_enrol(staff)
    client = Client()
    client.force_login(staff)

    assert client.get(CHANGELIST_URL).status_code == 403


@pytest.mark.parametrize("client_fixture", ["auditor_client", "superuser_client"])
def test_nobody_adds_changes_or_deletes_events_in_the_admin(
    request: pytest.FixtureRequest, trail: dict[str, AuditEvent], client_fixture: str
) -> None:
    client: Client = request.getfixturevalue(client_fixture)
    event = trail["alice_changes_password"]
    before = list(AuditEvent.objects.order_by("id").values())

    responses = [
        client.get(f"{CHANGELIST_URL}add/"),
        client.post(f"{CHANGELIST_URL}add/", {"action": "forged", "actor_type": "system"}),
        client.post(f"{CHANGELIST_URL}{event.pk}/change/", {"action": "forged", "outcome": "failure"}),
        client.get(f"{CHANGELIST_URL}{event.pk}/delete/"),
        client.post(f"{CHANGELIST_URL}{event.pk}/delete/", {"post": "yes"}),
        client.post(
            CHANGELIST_URL,
            {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
        ),
    ]

    assert [response.status_code for response in responses[:5]] == [403, 403, 403, 403, 403]
    assert responses[5].status_code in (200, 302)
    assert list(AuditEvent.objects.order_by("id").values()) == before


def test_the_user_admin_links_each_user_to_their_timeline(
    superuser_client: Client, trail: dict[str, AuditEvent], alice: User
) -> None:
    users_page = superuser_client.get("/admin/accounts/user/").content.decode()
    link = f'<a href="{CHANGELIST_URL}?about_user={alice.pk}">Timeline</a>'
    assert link in users_page

    response = superuser_client.get(f"{CHANGELIST_URL}?about_user={alice.pk}")

    assert [event.pk for event in listed(response)] == pks(
        trail, "bob_renames_alice", "alice_deactivates_bob", "alice_changes_password"
    )


def test_the_admin_takes_the_api_filters_as_query_parameters(
    auditor_client: Client, trail: dict[str, AuditEvent], alice: User
) -> None:
    by_target = auditor_client.get(
        CHANGELIST_URL, {"target_type": "accounts.user", "target_id": str(alice.pk)}
    )
    by_actor = auditor_client.get(CHANGELIST_URL, {"actor_type": "user", "actor_id": str(alice.pk)})
    by_request = auditor_client.get(CHANGELIST_URL, {"request_id": "req-b"})

    assert [event.pk for event in listed(by_target)] == pks(
        trail, "bob_renames_alice", "alice_changes_password"
    )
    assert [event.pk for event in listed(by_actor)] == pks(
        trail, "alice_deactivates_bob", "alice_changes_password"
    )
    assert [event.pk for event in listed(by_request)] == pks(trail, "bob_changes_password")


def test_the_sidebar_filters_by_action_outcome_and_actor_type(
    auditor_client: Client, trail: dict[str, AuditEvent]
) -> None:
    page = auditor_client.get(CHANGELIST_URL).content.decode()
    by_action = auditor_client.get(CHANGELIST_URL, {"action": "accounts.user.password_changed"})
    by_actor_type = auditor_client.get(CHANGELIST_URL, {"actor_type__exact": "system"})
    by_outcome = auditor_client.get(CHANGELIST_URL, {"outcome__exact": "failure"})

    for action in ("accounts.user.deactivated", "accounts.user.password_changed", "admin.object.changed"):
        assert f'href="?action={action}"' in page
    assert [event.pk for event in listed(by_action)] == pks(
        trail, "bob_changes_password", "alice_changes_password"
    )
    assert [event.pk for event in listed(by_actor_type)] == pks(trail, "system_prunes")
    assert listed(by_outcome) == []


def test_lookups_that_no_index_serves_are_refused(
    auditor_client: Client, trail: dict[str, AuditEvent]
) -> None:
    response = auditor_client.get(CHANGELIST_URL, {"user_agent__icontains": "curl"})

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("req-c", ["alice_deactivates_bob"]),
        ("admin.object.changed", ["bob_renames_alice"]),
        ("{alice}", ["bob_renames_alice", "alice_deactivates_bob", "alice_changes_password"]),
        ("nothing-like-this", []),
    ],
)
def test_search_matches_ids_and_actions_exactly(
    auditor_client: Client, trail: dict[str, AuditEvent], alice: User, term: str, expected: list[str]
) -> None:
    response = auditor_client.get(CHANGELIST_URL, {"q": term.format(alice=alice.pk)})

    assert [event.pk for event in listed(response)] == pks(trail, *expected)


def test_the_changelist_costs_the_same_queries_for_many_events(
    auditor_client: Client, trail: dict[str, AuditEvent], django_assert_max_num_queries: Any
) -> None:
    with CaptureQueriesContext(connection) as few:
        auditor_client.get(CHANGELIST_URL)
    for number in range(40):
        record(f"test.action_{number % 8}", actor=UserFactory.create(), request_id=f"req-{number}")

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = auditor_client.get(CHANGELIST_URL)

    assert len(listed(response)) == 46  # the trail, the 40 above and the auditor's sign-in
    assert not any(
        "COUNT(" in query["sql"].upper() and "LIMIT" not in query["sql"] for query in few.captured_queries
    )
