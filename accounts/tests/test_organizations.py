"""Organizations, members and invitations: services, the HTTP API and the invitation page."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Invitation, Membership, Organization, OrganizationRole, User
from accounts.selectors.organizations import organization_memberships_of
from accounts.services.moderation import user_set_roles
from accounts.services.organizations import (
    InvitationEmailMismatch,
    InvitationEmailUnverified,
    InvitationExpired,
    InvitationRevoked,
    InvitationUsed,
    invitation_accept,
    invitation_create,
    invitation_resend,
    invitation_revoke,
    invitation_token_hash,
    membership_remove,
    membership_set_role,
    organization_create,
    organization_delete,
    organization_update,
)
from accounts.tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from audit.models import AuditEvent
from conftest import LogCapture

pytestmark = pytest.mark.django_db

OWNER, ADMIN, MEMBER = (
    OrganizationRole.OWNER.value,
    OrganizationRole.ADMIN.value,
    OrganizationRole.MEMBER.value,
)
ACCEPT_URL = "/api/v1/organizations/invitations/accept/"
PAGE_URL = "/accounts/organizations/invitations/accept/"
INVITEE = "newcomer@example.com"
CaptureOnCommit = Callable[..., AbstractContextManager[Any]]


@dataclass
class Team:
    organization: Organization
    owner: User
    admin: User
    member: User
    outsider: User
    site_admin: User
    moderator: User

    def actor(self, name: str) -> User:
        return User.objects.get(pk=getattr(self, name).pk)


@pytest.fixture
def team() -> Team:
    organization = OrganizationFactory.create(name="Acme", slug="acme", description="Rockets.")
    users = {name: UserFactory.create(username=name) for name in ("olivia", "adam", "mia", "oscar")}
    for user in users.values():  # each signed up and verified their address
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    MembershipFactory.create(organization=organization, user=users["olivia"], role=OWNER)
    MembershipFactory.create(organization=organization, user=users["adam"], role=ADMIN)
    MembershipFactory.create(organization=organization, user=users["mia"], role=MEMBER)
    return Team(
        organization=organization,
        owner=users["olivia"],
        admin=users["adam"],
        member=users["mia"],
        outsider=users["oscar"],
        site_admin=user_set_roles(user=UserFactory.create(username="sam"), roles=["admin"]),
        moderator=user_set_roles(user=UserFactory.create(username="moe"), roles=["moderator"]),
    )


def client_for(user: User) -> APIClient:
    """A client for a freshly loaded user: no role cached from an earlier request."""
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))
    return client


def errors(response: Any) -> list[tuple[str, str | None]]:
    return [(error["code"], error["attr"]) for error in response.json()["errors"]]


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def roles_of(organization: Organization) -> dict[str, str]:
    return dict(Membership.objects.filter(organization=organization).values_list("user__username", "role"))


def snapshot(organization: Organization) -> tuple[Any, ...]:
    """Everything an organization action could change."""
    row = Organization.objects.filter(pk=organization.pk).values_list("name", "slug", "description").first()
    invitations = sorted(
        Invitation.objects.filter(organization_id=organization.pk).values_list(
            "email", "role", "token_hash", "expires_at", "accepted_at", "revoked_at"
        )
    )
    return row, roles_of(organization), invitations, AuditEvent.objects.count()


def verified_address(user: User, email: str = INVITEE, *, verified: bool = True) -> EmailAddress:
    return EmailAddress.objects.create(user=user, email=email, verified=verified, primary=False)


def token_in(message: Any) -> str:
    match = re.search(
        r"/accounts/organizations/invitations/accept/\?token=([A-Za-z0-9_-]+)", str(message.body)
    )
    assert match is not None, message.body
    return match.group(1)


def invite(
    team: Team,
    capture: CaptureOnCommit,
    *,
    email: str = INVITEE,
    role: str = MEMBER,
    by: str = "owner",
) -> tuple[Invitation, str]:
    """Invite through the service; return the invitation and the token of the e-mailed link."""
    with capture(execute=True):
        invitation = invitation_create(
            organization=team.organization, email=email, role=role, actor=team.actor(by)
        )
    return invitation, token_in(mail.outbox[-1])


@pytest.fixture
def invitee() -> User:
    user = UserFactory.create(username="nina")
    verified_address(user)
    return user


# --- services: organizations -------------------------------------------------------------------


def test_organization_create_makes_the_creator_its_owner_and_audits_both() -> None:
    creator = UserFactory.create(username="carla")

    organization = organization_create(actor=creator, name=" Acme ", slug="ACME-Labs", description="Rockets.")

    assert (organization.name, organization.slug, organization.description) == (
        "Acme",
        "acme-labs",
        "Rockets.",
    )
    assert roles_of(organization) == {"carla": OWNER}
    created, membership = events("accounts.organization.created"), events("accounts.membership.created")
    assert [(event.actor_id, event.target_id, event.changes) for event in created] == [
        (
            str(creator.pk),
            str(organization.pk),
            {"name": [None, "Acme"], "slug": [None, "acme-labs"], "description": [None, "Rockets."]},
        )
    ]
    assert [(event.changes, event.metadata) for event in membership] == [
        ({"role": [None, OWNER]}, {"user": str(creator.pk)})
    ]


@pytest.mark.parametrize(
    ("slug", "code"),
    [("acme", "unique"), ("acme_labs", "invalid"), ("-acme", "invalid"), ("a--b", "invalid"), ("", "blank")],
)
def test_organization_create_refuses_a_bad_slug_and_writes_nothing(team: Team, slug: str, code: str) -> None:
    before = (Organization.objects.count(), Membership.objects.count(), AuditEvent.objects.count())

    with pytest.raises(ValidationError) as raised:
        organization_create(actor=team.actor("outsider"), name="Other", slug=slug)

    assert [error.code for error in raised.value.error_dict["slug"]] == [code]
    assert (Organization.objects.count(), Membership.objects.count(), AuditEvent.objects.count()) == before


def test_organization_update_records_only_the_changed_fields(team: Team) -> None:
    organization_update(
        organization=team.organization, actor=team.actor("admin"), name="Acme Corp", description="Rockets."
    )

    team.organization.refresh_from_db()
    assert (team.organization.name, team.organization.description) == ("Acme Corp", "Rockets.")
    assert [event.changes for event in events("accounts.organization.updated")] == [
        {"name": ["Acme", "Acme Corp"]}
    ]


def test_organization_update_without_a_change_records_nothing(team: Team) -> None:
    before = snapshot(team.organization)

    organization_update(organization=team.organization, actor=team.actor("owner"), name="Acme", slug="ACME")

    assert snapshot(team.organization) == before


def test_organization_delete_removes_members_and_invitations_and_audits(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invite(team, django_capture_on_commit_callbacks)

    organization_delete(organization=team.organization, actor=team.actor("owner"))

    assert not Organization.objects.filter(pk=team.organization.pk).exists()
    assert Membership.objects.filter(organization_id=team.organization.pk).count() == 0
    assert Invitation.objects.filter(organization_id=team.organization.pk).count() == 0
    [event] = events("accounts.organization.deleted")
    assert (event.target_id, event.target_label, event.metadata) == (
        str(team.organization.pk),
        "Acme",
        {"members": 3, "open_invitations": 1},
    )


# --- services: members -------------------------------------------------------------------------


def test_membership_set_role_records_before_and_after(team: Team) -> None:
    membership = Membership.objects.get(user=team.member)

    membership_set_role(membership=membership, role=ADMIN, actor=team.actor("owner"))

    assert roles_of(team.organization)["mia"] == ADMIN
    [event] = events("accounts.membership.role_changed")
    assert (event.actor_id, event.target_id, event.changes, event.metadata) == (
        str(team.owner.pk),
        str(team.organization.pk),
        {"role": [MEMBER, ADMIN]},
        {"user": str(team.member.pk)},
    )


def test_the_last_owner_cannot_be_demoted(team: Team) -> None:
    before = snapshot(team.organization)

    with pytest.raises(ValidationError) as raised:
        membership_set_role(
            membership=Membership.objects.get(user=team.owner), role=ADMIN, actor=team.actor("owner")
        )

    assert [error.code for error in raised.value.error_dict["role"]] == ["last_owner"]
    assert snapshot(team.organization) == before


def test_the_last_owner_cannot_leave_but_can_after_handing_over(team: Team) -> None:
    owner_membership = Membership.objects.get(user=team.owner)
    with pytest.raises(ValidationError) as raised:
        membership_remove(membership=owner_membership, actor=team.actor("owner"))
    assert [error.code for error in raised.value.error_list] == ["last_owner"]
    assert roles_of(team.organization)["olivia"] == OWNER

    membership_set_role(
        membership=Membership.objects.get(user=team.admin), role=OWNER, actor=team.actor("owner")
    )
    membership_remove(membership=owner_membership, actor=team.actor("owner"))

    assert roles_of(team.organization) == {"adam": OWNER, "mia": MEMBER}
    [event] = events("accounts.membership.left")
    assert (event.actor_id, event.changes, event.metadata) == (
        str(team.owner.pk),
        {"role": [OWNER, None]},
        {"user": str(team.owner.pk)},
    )


def test_only_owners_grant_the_owner_role(team: Team) -> None:
    before = snapshot(team.organization)

    with pytest.raises(PermissionDenied):
        membership_set_role(
            membership=Membership.objects.get(user=team.member), role=OWNER, actor=team.actor("admin")
        )

    assert snapshot(team.organization) == before


@pytest.mark.django_db(transaction=True)
def test_two_owners_leaving_at_once_leave_one_owner(require_postgresql: None) -> None:
    first, second = UserFactory.create(username="first"), UserFactory.create(username="second")
    organization = organization_create(actor=first, name="Acme", slug="acme")
    MembershipFactory.create(organization=organization, user=second, role=OWNER)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def leave(user: User) -> None:
        try:
            barrier.wait()
            membership_remove(
                membership=Membership.objects.get(organization=organization, user=user),
                actor=User.objects.get(pk=user.pk),
            )
            outcomes.append("left")
        except ValidationError as error:
            outcomes.append(error.error_list[0].code or "")
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["last_owner", "left"]
    assert list(roles_of(organization).values()) == [OWNER]


# --- services: invitations ---------------------------------------------------------------------


def test_invitation_create_stores_only_the_tokens_hash_and_emails_the_link(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, token = invite(
        team, django_capture_on_commit_callbacks, email=" NewComer@Example.com ", role=ADMIN
    )

    invitation.refresh_from_db()
    assert (invitation.email, invitation.role, invitation.invited_by_id) == (INVITEE, ADMIN, team.owner.pk)
    assert invitation.token_hash == invitation_token_hash(token) != token
    assert len(token) >= 43  # 32 random bytes
    message = mail.outbox[-1]
    assert message.to == [INVITEE]
    assert "You are invited to join Acme" in message.subject
    assert "olivia invited you to join the organization Acme as Administrator." in message.body
    [(html, mimetype)] = cast(EmailMultiAlternatives, message).alternatives
    assert mimetype == "text/html"
    assert f"http://127.0.0.1:8000/accounts/organizations/invitations/accept/?token={token}" in str(html)
    [event] = events("accounts.invitation.created")
    assert event.metadata == {"invitation": str(invitation.pk), "email": INVITEE, "role": ADMIN}
    assert event.changes == {"role": [None, ADMIN], "expires_at": [None, invitation.expires_at.isoformat()]}
    assert token not in str(event.changes) + str(event.metadata)


def test_invitation_lifetime_follows_the_setting(
    team: Team, settings: Any, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    settings.ORGANIZATION_INVITATION_DAYS = 2
    before = timezone.now()

    invitation, _ = invite(team, django_capture_on_commit_callbacks)

    assert before + timedelta(days=2) <= invitation.expires_at <= timezone.now() + timedelta(days=2)


@pytest.mark.parametrize("address", ["mia@example.com", "MIA.work@example.com"])
def test_invitation_create_refuses_an_address_of_a_member(team: Team, address: str) -> None:
    verified_address(team.member, "mia.work@example.com")
    before = snapshot(team.organization)

    with pytest.raises(ValidationError) as raised:
        invitation_create(organization=team.organization, email=address, actor=team.actor("owner"))

    assert [error.code for error in raised.value.error_dict["email"]] == ["already_member"]
    assert snapshot(team.organization) == before
    assert mail.outbox == []


def test_invitation_create_refuses_a_second_pending_invitation(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invite(team, django_capture_on_commit_callbacks)
    before = snapshot(team.organization)

    with pytest.raises(ValidationError) as raised:
        invitation_create(organization=team.organization, email=INVITEE.upper(), actor=team.actor("admin"))

    assert [error.code for error in raised.value.error_dict["email"]] == ["invitation_pending"]
    assert snapshot(team.organization) == before


def test_invitation_create_replaces_an_expired_invitation(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    old, old_token = invite(team, django_capture_on_commit_callbacks)
    Invitation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    new, new_token = invite(team, django_capture_on_commit_callbacks)

    old.refresh_from_db()
    assert old.revoked_at is not None
    assert new.pk != old.pk
    assert new_token != old_token
    [event] = events("accounts.invitation.revoked")
    assert event.metadata["reason"] == "expired_and_replaced"


def test_invitation_resend_gives_a_new_token_and_the_old_one_stops_working(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, old_token = invite(team, django_capture_on_commit_callbacks)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(days=1))

    with django_capture_on_commit_callbacks(execute=True):
        invitation_resend(invitation=invitation, actor=team.actor("admin"))
    new_token = token_in(mail.outbox[-1])

    assert new_token != old_token
    with pytest.raises(ValidationError) as raised:
        invitation_accept(token=old_token, user=invitee)
    assert [error.code for error in raised.value.error_dict["token"]] == ["invitation_invalid"]
    assert invitation_accept(token=new_token, user=invitee).role == MEMBER
    [event] = events("accounts.invitation.resent")
    assert event.actor_id == str(team.admin.pk)


def test_invitation_accept_makes_the_invitee_a_member_once(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, token = invite(team, django_capture_on_commit_callbacks, role=ADMIN)

    membership = invitation_accept(token=token, user=invitee)
    again = invitation_accept(token=token, user=User.objects.get(pk=invitee.pk))

    assert again.pk == membership.pk
    assert roles_of(team.organization)["nina"] == ADMIN
    invitation.refresh_from_db()
    assert (invitation.accepted_by_id, invitation.accepted_at is not None) == (invitee.pk, True)
    [accepted] = events("accounts.invitation.accepted")
    assert (accepted.actor_id, accepted.metadata["already_member"]) == (str(invitee.pk), False)
    assert len(events("accounts.membership.created")) == 1


def test_invitation_accept_by_someone_already_a_member_keeps_their_role(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks, email="mia.other@example.com", role=ADMIN)
    verified_address(team.member, "mia.other@example.com")

    membership = invitation_accept(token=token, user=team.actor("member"))

    assert membership.role == MEMBER
    [accepted] = events("accounts.invitation.accepted")
    assert accepted.metadata["already_member"] is True


@pytest.mark.parametrize(
    ("spoil", "refusal"),
    [
        (lambda invitation: {"expires_at": timezone.now() - timedelta(seconds=1)}, InvitationExpired),
        (lambda invitation: {"revoked_at": timezone.now()}, InvitationRevoked),
        (
            lambda invitation: {
                "accepted_at": timezone.now(),
                "accepted_by": UserFactory.create(username="early"),
            },
            InvitationUsed,
        ),
    ],
    ids=["expired", "revoked", "used"],
)
def test_invitation_accept_refuses_a_closed_invitation(
    team: Team,
    invitee: User,
    django_capture_on_commit_callbacks: CaptureOnCommit,
    spoil: Callable[[Invitation], dict[str, Any]],
    refusal: type[Exception],
) -> None:
    invitation, token = invite(team, django_capture_on_commit_callbacks)
    Invitation.objects.filter(pk=invitation.pk).update(**spoil(invitation))
    before = snapshot(team.organization)

    with pytest.raises(refusal):
        invitation_accept(token=token, user=invitee)

    assert snapshot(team.organization) == before


@pytest.mark.parametrize(
    ("verified", "refusal"), [(False, InvitationEmailUnverified), (None, InvitationEmailMismatch)]
)
def test_invitation_accept_needs_the_invited_address_verified(
    team: Team,
    django_capture_on_commit_callbacks: CaptureOnCommit,
    verified: bool | None,
    refusal: type[Exception],
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks)
    stranger = UserFactory.create(username="stranger")
    if verified is not None:
        verified_address(stranger, INVITEE.upper(), verified=verified)
    before = snapshot(team.organization)

    with pytest.raises(refusal):
        invitation_accept(token=token, user=stranger)

    assert snapshot(team.organization) == before


def test_invitation_revoke_closes_the_link(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, token = invite(team, django_capture_on_commit_callbacks)

    invitation_revoke(invitation=invitation, actor=team.actor("admin"))

    with pytest.raises(InvitationRevoked):
        invitation_accept(token=token, user=invitee)
    with pytest.raises(ValidationError) as raised:
        invitation_revoke(invitation=invitation, actor=team.actor("admin"))
    assert [error.code for error in raised.value.error_list] == ["invitation_revoked"]


@pytest.mark.django_db(transaction=True)
def test_accepting_the_same_invitation_twice_at_once_makes_one_membership(
    require_postgresql: None,
) -> None:
    owner, invitee = UserFactory.create(username="olivia"), UserFactory.create(username="nina")
    verified_address(invitee)
    organization = organization_create(actor=owner, name="Acme", slug="acme")
    invitation_create(organization=organization, email=INVITEE, actor=owner)  # commits: the e-mail goes
    token = token_in(mail.outbox[-1])
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def accept() -> None:
        try:
            barrier.wait()
            outcomes.append(invitation_accept(token=token, user=User.objects.get(pk=invitee.pk)).pk)
        except Exception as error:  # the assertion below shows it
            outcomes.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    membership = Membership.objects.get(organization=organization, user=invitee)
    assert outcomes == [membership.pk, membership.pk]
    assert len(events("accounts.invitation.accepted")) == 1


def test_organization_memberships_of_lists_the_users_organizations_by_name(
    team: Team, django_assert_num_queries: Any
) -> None:
    MembershipFactory.create(
        organization=OrganizationFactory.create(name="Zeta"), user=team.member, role=ADMIN
    )
    MembershipFactory.create(organization=OrganizationFactory.create(name="Beta"), user=team.member)

    with django_assert_num_queries(1):
        listed = [(m.organization.name, m.role) for m in organization_memberships_of(user=team.member)]

    assert listed == [("Acme", MEMBER), ("Beta", MEMBER), ("Zeta", ADMIN)]


# --- API: organizations ------------------------------------------------------------------------


def organization_body(organization: Organization, *, role: str | None, member_count: int) -> dict[str, Any]:
    organization.refresh_from_db()
    return {
        "id": str(organization.pk),
        "name": organization.name,
        "slug": organization.slug,
        "description": organization.description,
        "role": role,
        "member_count": member_count,
        "created_at": organization.created_at.isoformat().replace("+00:00", "Z"),
        "updated_at": organization.updated_at.isoformat().replace("+00:00", "Z"),
    }


def test_list_shows_the_callers_organizations_with_their_role(team: Team) -> None:
    other = OrganizationFactory.create(name="Beta", slug="beta")
    OrganizationFactory.create(name="Gamma", slug="gamma")
    MembershipFactory.create(organization=other, user=team.member, role=ADMIN)

    response = client_for(team.member).get("/api/v1/organizations/")

    assert response.status_code == 200
    assert response.json() == {
        "count": 2,
        "next": None,
        "previous": None,
        "results": [
            organization_body(team.organization, role=MEMBER, member_count=3),
            organization_body(other, role=ADMIN, member_count=1),
        ],
    }


@pytest.mark.parametrize("staff", ["site_admin", "moderator"])
def test_site_staff_list_every_organization_in_pages(team: Team, staff: str) -> None:
    OrganizationFactory.create_batch(2)

    response = client_for(team.actor(staff)).get("/api/v1/organizations/?page_size=2")

    body = response.json()
    assert (response.status_code, body["count"], len(body["results"])) == (200, 3, 2)
    assert body["results"][0] == organization_body(team.organization, role=None, member_count=3)
    assert body["next"].endswith("/api/v1/organizations/?page=2&page_size=2")


def test_list_needs_a_signed_in_caller(api_client: APIClient) -> None:
    response = api_client.get("/api/v1/organizations/")

    assert (response.status_code, errors(response)) == (401, [("not_authenticated", None)])


def test_create_answers_the_new_organization(user: User) -> None:
    response = client_for(user).post(
        "/api/v1/organizations/", {"name": "Acme", "slug": "acme", "description": "Rockets."}, format="json"
    )

    assert response.status_code == 201
    organization = Organization.objects.get(slug="acme")
    assert response.json() == organization_body(organization, role=OWNER, member_count=1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "Other", "slug": "acme"}, [("unique", "slug")]),
        ({"name": "Other", "slug": "Not a slug"}, [("invalid", "slug")]),
        ({"slug": "other"}, [("required", "name")]),
        ({"name": "x" * 101, "slug": "other", "description": 5}, [("max_length", "name")]),
        ({"name": "Other", "slug": "other", "id": "00000000-0000-0000-0000-000000000000", "role": "x"}, []),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(
    team: Team, body: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    before = (Organization.objects.count(), AuditEvent.objects.count())

    response = client_for(team.outsider).post("/api/v1/organizations/", body, format="json")

    if not expected:  # unknown and read-only fields are ignored, never assigned
        assert response.status_code == 201
        assert response.json()["id"] != body["id"]
        assert response.json()["role"] == OWNER
        return
    assert (response.status_code, response.json()["type"], errors(response)) == (
        400,
        "validation_error",
        expected,
    )
    assert (Organization.objects.count(), AuditEvent.objects.count()) == before


def test_update_changes_the_organization(team: Team) -> None:
    response = client_for(team.admin).patch(
        f"/api/v1/organizations/{team.organization.pk}/", {"slug": "acme-corp"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == organization_body(team.organization, role=ADMIN, member_count=3)
    assert response.json()["slug"] == "acme-corp"


def test_put_is_not_allowed(team: Team) -> None:
    response = client_for(team.owner).put(
        f"/api/v1/organizations/{team.organization.pk}/", {"name": "X", "slug": "x"}, format="json"
    )

    assert (response.status_code, errors(response)) == (405, [("method_not_allowed", None)])


def test_an_unknown_organization_is_a_404(team: Team) -> None:
    response = client_for(team.site_admin).get("/api/v1/organizations/00000000-0000-0000-0000-000000000000/")

    assert (response.status_code, errors(response)) == (404, [("not_found", None)])


# --- API: the permission matrix ----------------------------------------------------------------

ACTORS = ("owner", "admin", "member", "outsider", "site_admin", "moderator")


def _org(team: Team) -> str:
    return f"/api/v1/organizations/{team.organization.pk}/"


ACTIONS: dict[str, Callable[[APIClient, Team, User], Any]] = {
    "retrieve": lambda client, team, fellow: client.get(_org(team)),
    "update": lambda client, team, fellow: client.patch(_org(team), {"name": "Renamed"}, format="json"),
    "delete": lambda client, team, fellow: client.delete(_org(team)),
    "list_members": lambda client, team, fellow: client.get(f"{_org(team)}members/"),
    "retrieve_member": lambda client, team, fellow: client.get(f"{_org(team)}members/{fellow.pk}/"),
    "promote_member": lambda client, team, fellow: client.patch(
        f"{_org(team)}members/{fellow.pk}/", {"role": ADMIN}, format="json"
    ),
    "remove_member": lambda client, team, fellow: client.delete(f"{_org(team)}members/{fellow.pk}/"),
    "demote_admin": lambda client, team, fellow: client.patch(
        f"{_org(team)}members/{team.admin.pk}/", {"role": MEMBER}, format="json"
    ),
    "remove_owner": lambda client, team, fellow: client.delete(f"{_org(team)}members/{team.owner.pk}/"),
    "list_invitations": lambda client, team, fellow: client.get(f"{_org(team)}invitations/"),
    "invite_member": lambda client, team, fellow: client.post(
        f"{_org(team)}invitations/", {"email": INVITEE}, format="json"
    ),
    "invite_owner": lambda client, team, fellow: client.post(
        f"{_org(team)}invitations/", {"email": INVITEE, "role": OWNER}, format="json"
    ),
}
#                          owner admin member outsider site_admin moderator
MATRIX: dict[str, tuple[int, ...]] = {
    "retrieve": (200, 200, 200, 404, 200, 200),
    "update": (200, 200, 403, 404, 200, 403),
    "delete": (204, 403, 403, 404, 204, 403),
    "list_members": (200, 200, 200, 404, 200, 200),
    "retrieve_member": (200, 200, 200, 404, 200, 200),
    "promote_member": (200, 200, 403, 404, 200, 403),
    "remove_member": (204, 204, 403, 404, 204, 403),
    "demote_admin": (200, 200, 403, 404, 200, 403),  # the admin steps down themselves
    "remove_owner": (400, 403, 403, 404, 400, 403),  # 400: the last owner
    "list_invitations": (200, 200, 403, 404, 200, 403),
    "invite_member": (201, 201, 403, 404, 201, 403),
    "invite_owner": (201, 403, 403, 404, 201, 403),
}


@pytest.mark.parametrize(
    ("action", "actor", "expected"),
    [
        (action, actor, status)
        for action, row in MATRIX.items()
        for actor, status in zip(ACTORS, row, strict=True)
    ],
)
def test_permission_matrix(team: Team, action: str, actor: str, expected: int) -> None:
    fellow = MembershipFactory.create(
        organization=team.organization, user=UserFactory.create(username="pat")
    ).user
    before = snapshot(team.organization)

    response = ACTIONS[action](client_for(team.actor(actor)), team, fellow)

    assert response.status_code == expected, response.content
    if expected >= 400:
        code = {400: "last_owner", 403: "permission_denied", 404: "not_found"}[expected]
        assert [error_code for error_code, _ in errors(response)] == [code]
        assert snapshot(team.organization) == before


def test_an_organization_admin_cannot_change_another_admin(team: Team) -> None:
    other_admin = UserFactory.create(username="alex")
    MembershipFactory.create(organization=team.organization, user=other_admin, role=ADMIN)
    before = snapshot(team.organization)
    members = f"{_org(team)}members/{other_admin.pk}/"

    demoted = client_for(team.admin).patch(members, {"role": MEMBER}, format="json")
    removed = client_for(team.admin).delete(members)

    assert (demoted.status_code, removed.status_code) == (403, 403)
    assert snapshot(team.organization) == before


def test_an_organization_admin_cannot_make_themselves_owner(team: Team) -> None:
    before = snapshot(team.organization)

    response = client_for(team.admin).patch(f"{_org(team)}members/me/", {"role": OWNER}, format="json")

    assert (response.status_code, errors(response)) == (403, [("permission_denied", None)])
    assert snapshot(team.organization) == before


def test_a_member_cannot_promote_themselves(team: Team) -> None:
    before = snapshot(team.organization)

    response = client_for(team.member).patch(f"{_org(team)}members/me/", {"role": ADMIN}, format="json")

    assert (response.status_code, errors(response)) == (403, [("permission_denied", None)])
    assert snapshot(team.organization) == before


# --- API: members ------------------------------------------------------------------------------


def test_members_list_the_users_and_their_roles(team: Team) -> None:
    response = client_for(team.member).get(f"{_org(team)}members/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [(row["user"]["username"], row["role"]) for row in body["results"]] == [
        ("olivia", OWNER),
        ("adam", ADMIN),
        ("mia", MEMBER),
    ]
    membership = Membership.objects.get(user=team.owner)
    assert body["results"][0] == {
        "user": {"id": str(team.owner.pk), "username": "olivia", "display_name": "olivia"},
        "role": OWNER,
        "joined_at": membership.created_at.isoformat().replace("+00:00", "Z"),
    }


def test_members_me_is_the_callers_membership_and_a_404_for_staff_outside(team: Team) -> None:
    mine = client_for(team.admin).get(f"{_org(team)}members/me/")
    staff = client_for(team.moderator).get(f"{_org(team)}members/me/")

    assert (mine.status_code, mine.json()["role"]) == (200, ADMIN)
    assert (staff.status_code, errors(staff)) == (404, [("not_found", None)])


def test_owner_grants_owner_through_the_api(team: Team) -> None:
    response = client_for(team.owner).patch(
        f"{_org(team)}members/{team.member.pk}/", {"role": OWNER}, format="json"
    )

    assert (response.status_code, response.json()["role"]) == (200, OWNER)
    assert roles_of(team.organization)["mia"] == OWNER
    [event] = events("accounts.membership.role_changed")
    assert event.changes == {"role": [MEMBER, OWNER]}


def test_a_member_leaves(team: Team) -> None:
    response = client_for(team.member).delete(f"{_org(team)}members/me/")

    assert response.status_code == 204
    assert "mia" not in roles_of(team.organization)
    assert client_for(team.member).get(_org(team)).status_code == 404
    [event] = events("accounts.membership.left")
    assert (event.actor_id, event.metadata) == (str(team.member.pk), {"user": str(team.member.pk)})


def test_the_last_owner_cannot_leave_through_the_api(team: Team) -> None:
    before = snapshot(team.organization)

    response = client_for(team.owner).delete(f"{_org(team)}members/me/")

    assert (response.status_code, response.json()["type"], errors(response)) == (
        400,
        "validation_error",
        [("last_owner", None)],
    )
    assert snapshot(team.organization) == before


@pytest.mark.parametrize(
    ("body", "expected"),
    [({"role": "boss"}, [("invalid_choice", "role")]), ({}, [("required", "role")])],
)
def test_role_change_refuses_bad_input(
    team: Team, body: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    before = snapshot(team.organization)

    response = client_for(team.owner).patch(f"{_org(team)}members/{team.member.pk}/", body, format="json")

    assert (response.status_code, errors(response)) == (400, expected)
    assert snapshot(team.organization) == before


def test_a_user_who_is_not_a_member_is_a_404_in_the_members(team: Team) -> None:
    response = client_for(team.owner).get(f"{_org(team)}members/{team.outsider.pk}/")

    assert (response.status_code, errors(response)) == (404, [("not_found", None)])


# --- API: invitations --------------------------------------------------------------------------


def test_a_members_unverified_copy_of_an_address_does_not_block_its_invitation(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    """Anyone may add any address to their account unverified: only verified ownership makes the
    address a member's (the review's finding 7: a member could block invitations to anyone)."""
    verified_address(team.member, INVITEE, verified=False)
    invitee = UserFactory.create(username="nina", email=INVITEE)
    verified_address(invitee, INVITEE)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(team.owner).post(f"{_org(team)}invitations/", {"email": INVITEE}, format="json")

    assert response.status_code == 201, response.content
    assert [message.to for message in mail.outbox] == [[INVITEE]]
    assert invitation_accept(token=token_in(mail.outbox[-1]), user=invitee).role == MEMBER


def test_invite_through_the_api_never_answers_the_token(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(team.admin).post(
            f"{_org(team)}invitations/", {"email": "NewComer@example.com", "role": ADMIN}, format="json"
        )

    token = token_in(mail.outbox[-1])
    invitation = Invitation.objects.get()
    assert response.status_code == 201
    assert response.json() == {
        "id": str(invitation.pk),
        "email": INVITEE,
        "role": ADMIN,
        "state": "pending",
        "invited_by": {"id": str(team.admin.pk), "username": "adam", "display_name": "adam"},
        "created_at": invitation.created_at.isoformat().replace("+00:00", "Z"),
        "expires_at": invitation.expires_at.isoformat().replace("+00:00", "Z"),
    }
    assert token not in response.content.decode()
    assert invitation.token_hash not in response.content.decode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"email": "mia@example.com"}, [("already_member", "email")]),
        ({"email": "not-an-address"}, [("invalid", "email")]),
        ({"email": INVITEE, "role": "boss"}, [("invalid_choice", "role")]),
        ({}, [("required", "email")]),
    ],
)
def test_invite_refuses_bad_input_and_sends_nothing(
    team: Team,
    body: dict[str, Any],
    expected: list[tuple[str, str]],
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    before = snapshot(team.organization)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(team.owner).post(f"{_org(team)}invitations/", body, format="json")

    assert (response.status_code, errors(response)) == (400, expected)
    assert snapshot(team.organization) == before
    assert mail.outbox == []


def test_invite_refuses_a_second_pending_invitation_over_the_api(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invite(team, django_capture_on_commit_callbacks)
    before = snapshot(team.organization)

    response = client_for(team.admin).post(f"{_org(team)}invitations/", {"email": INVITEE}, format="json")

    assert (response.status_code, errors(response)) == (400, [("invitation_pending", "email")])
    assert snapshot(team.organization) == before


def test_invitation_emails_are_limited_per_inviting_user(
    team: Team, settings: Any, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    """Sending and resending count together: each is mail to an unverified address."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "invitation_emails": "2/hour",
        },
    }
    owner, admin = client_for(team.owner), client_for(team.admin)
    url = f"{_org(team)}invitations/"

    with django_capture_on_commit_callbacks(execute=True):
        first = owner.post(url, {"email": "one@example.com"}, format="json")
        resent = owner.post(f"{url}{first.json()['id']}/resend/")
        refused = owner.post(url, {"email": "three@example.com"}, format="json")
        by_someone_else = admin.post(url, {"email": "three@example.com"}, format="json")

    assert (first.status_code, resent.status_code, by_someone_else.status_code) == (201, 200, 201)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert errors(refused) == [("throttled", None)]
    assert sorted(message.to[0] for message in mail.outbox) == [
        "one@example.com",
        "one@example.com",
        "three@example.com",
    ]
    assert owner.get(url).status_code == 200  # reading is not limited by it


def test_invitations_list_shows_open_ones_with_their_state(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    expired, _ = invite(team, django_capture_on_commit_callbacks, email="late@example.com")
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = invite(team, django_capture_on_commit_callbacks, email="gone@example.com")
    invitation_revoke(invitation=revoked, actor=team.actor("owner"))
    invite(team, django_capture_on_commit_callbacks, email="soon@example.com")

    response = client_for(team.admin).get(f"{_org(team)}invitations/")

    assert response.status_code == 200
    assert [(row["email"], row["state"]) for row in response.json()["results"]] == [
        ("soon@example.com", "pending"),
        ("late@example.com", "expired"),
    ]


def test_revoke_and_resend_over_the_api(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, first_token = invite(team, django_capture_on_commit_callbacks)
    url = f"{_org(team)}invitations/{invitation.pk}/"

    with django_capture_on_commit_callbacks(execute=True):
        resent = client_for(team.admin).post(f"{url}resend/")
    second_token = token_in(mail.outbox[-1])
    revoked = client_for(team.admin).delete(url)
    revoked_again = client_for(team.admin).delete(url)
    resent_after = client_for(team.admin).post(f"{url}resend/")

    assert (resent.status_code, resent.json()["state"]) == (200, "pending")
    assert second_token != first_token
    assert revoked.status_code == 204
    assert (revoked_again.status_code, errors(revoked_again)) == (400, [("invitation_revoked", None)])
    assert (resent_after.status_code, errors(resent_after)) == (400, [("invitation_revoked", None)])
    assert len(mail.outbox) == 2
    accepted = client_for(invitee).post(ACCEPT_URL, {"token": second_token}, format="json")
    assert (accepted.status_code, errors(accepted)) == (410, [("invitation_revoked", None)])


def test_an_admin_cannot_revoke_an_owner_invitation(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, _ = invite(team, django_capture_on_commit_callbacks, role=OWNER)
    before = snapshot(team.organization)

    response = client_for(team.admin).delete(f"{_org(team)}invitations/{invitation.pk}/")

    assert (response.status_code, errors(response)) == (403, [("permission_denied", None)])
    assert snapshot(team.organization) == before


def test_an_invitation_of_another_organization_is_a_404(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    invitation, _ = invite(team, django_capture_on_commit_callbacks)
    elsewhere = organization_create(actor=team.actor("admin"), name="Other", slug="other")

    response = client_for(team.admin).delete(
        f"/api/v1/organizations/{elsewhere.pk}/invitations/{invitation.pk}/"
    )

    assert (response.status_code, errors(response)) == (404, [("not_found", None)])
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


# --- API: accepting ----------------------------------------------------------------------------


def test_the_invitee_accepts_with_the_token_of_the_emailed_link(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        client_for(team.owner).post(
            f"{_org(team)}invitations/", {"email": INVITEE, "role": ADMIN}, format="json"
        )
    token = token_in(mail.outbox[-1])

    response = client_for(invitee).post(ACCEPT_URL, {"token": token}, format="json")
    again = client_for(invitee).post(ACCEPT_URL, {"token": token}, format="json")

    membership = Membership.objects.get(user=invitee)
    expected = {
        "organization": {"id": str(team.organization.pk), "name": "Acme", "slug": "acme"},
        "role": ADMIN,
        "joined_at": membership.created_at.isoformat().replace("+00:00", "Z"),
    }
    assert (response.status_code, response.json()) == (200, expected)
    assert (again.status_code, again.json()) == (200, expected)
    assert client_for(invitee).get(_org(team)).json()["role"] == ADMIN


def test_a_used_token_is_refused_to_anyone_else(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks)
    invitation_accept(token=token, user=invitee)
    other = UserFactory.create(username="other")
    EmailAddress.objects.filter(user=invitee).delete()
    verified_address(other)
    before = snapshot(team.organization)

    response = client_for(other).post(ACCEPT_URL, {"token": token}, format="json")

    assert (response.status_code, errors(response)) == (410, [("invitation_used", None)])
    assert snapshot(team.organization) == before


@pytest.mark.parametrize(
    ("prepare", "status", "expected"),
    [
        ("unknown", 400, [("invitation_invalid", "token")]),
        ("blank", 400, [("blank", "token")]),
        ("expired", 410, [("invitation_expired", None)]),
        ("revoked", 410, [("invitation_revoked", None)]),
        ("wrong_user", 403, [("invitation_email_mismatch", None)]),
        ("unverified", 403, [("invitation_email_unverified", None)]),
    ],
)
def test_accept_refusals(
    team: Team,
    django_capture_on_commit_callbacks: CaptureOnCommit,
    prepare: str,
    status: int,
    expected: list[tuple[str, str | None]],
) -> None:
    invitation, token = invite(team, django_capture_on_commit_callbacks)
    caller = UserFactory.create(username="caller")
    verified_address(caller, verified=prepare != "unverified")
    if prepare == "unknown":
        token = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif prepare == "blank":
        token = ""
    elif prepare == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif prepare == "revoked":
        Invitation.objects.filter(pk=invitation.pk).update(revoked_at=timezone.now())
    elif prepare == "wrong_user":
        EmailAddress.objects.filter(user=caller).update(email="caller@example.com")
    before = snapshot(team.organization)

    response = client_for(caller).post(ACCEPT_URL, {"token": token}, format="json")

    assert (response.status_code, errors(response)) == (status, expected)
    assert snapshot(team.organization) == before
    if token:
        assert token not in response.content.decode()


def test_tokens_stay_out_of_logs_and_audit(
    team: Team,
    invitee: User,
    log_capture: LogCapture,
    django_capture_on_commit_callbacks: CaptureOnCommit,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        client_for(team.owner).post(f"{_org(team)}invitations/", {"email": INVITEE}, format="json")
    token = token_in(mail.outbox[-1])
    client_for(team.outsider).post(ACCEPT_URL, {"token": token}, format="json")  # 403, logged
    client_for(invitee).post(ACCEPT_URL, {"token": token + "x"}, format="json")  # 400, logged
    browser = Client()
    browser.force_login(invitee)
    browser.get(PAGE_URL, {"token": token + "x"})  # 400 page, logged
    client_for(invitee).post(ACCEPT_URL, {"token": token}, format="json")

    assert "Bad Request" in log_capture.output
    assert token not in log_capture.output
    trail = [(event.changes, event.metadata) for event in AuditEvent.objects.all()]
    assert token not in str(trail)


def test_schema_describes_the_organization_endpoints(api_client: APIClient) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]

    assert set(paths["/api/v1/organizations/"]) == {"get", "post"}
    assert set(paths["/api/v1/organizations/{id}/"]) == {"get", "patch", "delete"}
    assert set(paths["/api/v1/organizations/{organization_id}/members/"]) == {"get"}
    assert set(paths["/api/v1/organizations/{organization_id}/members/{user_id}/"]) == {
        "get",
        "patch",
        "delete",
    }
    assert set(paths["/api/v1/organizations/{organization_id}/invitations/"]) == {"get", "post"}
    assert set(paths["/api/v1/organizations/{organization_id}/invitations/{id}/"]) == {"delete"}
    assert set(paths["/api/v1/organizations/{organization_id}/invitations/{id}/resend/"]) == {"post"}
    accept = paths["/api/v1/organizations/invitations/accept/"]["post"]
    assert {"200", "400", "401", "403", "410"} <= set(accept["responses"])


# --- the invitation page -----------------------------------------------------------------------


@pytest.fixture
def browser(invitee: User) -> Client:
    client = Client()
    client.force_login(invitee)
    return client


def test_the_page_asks_to_sign_in_first_and_comes_back(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks)

    response = Client().get(PAGE_URL, {"token": token})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert "invitations/accept/%3Ftoken%3D" in response["Location"]


def test_the_page_shows_the_organization_and_accepts_on_post(
    team: Team, invitee: User, browser: Client, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks, role=ADMIN)

    shown = browser.get(PAGE_URL, {"token": token})
    accepted = browser.post(PAGE_URL, {"token": token})

    assert shown.status_code == 200
    assert shown["Referrer-Policy"] == "no-referrer"
    assert "Join Acme" in shown.content.decode()
    assert "olivia invited you to join Acme as Administrator." in shown.content.decode()
    assert 'name="csrfmiddlewaretoken"' in shown.content.decode()
    assert "Accept the invitation" in shown.content.decode()
    assert accepted.status_code == 200
    assert "You are a member of Acme, as Administrator." in accepted.content.decode()
    assert roles_of(team.organization)["nina"] == ADMIN


def test_the_page_needs_the_csrf_token(
    team: Team, invitee: User, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks)
    client = Client(enforce_csrf_checks=True)
    client.force_login(invitee)

    response = client.post(PAGE_URL, {"token": token})

    assert response.status_code == 403
    assert "nina" not in roles_of(team.organization)


def test_the_page_explains_a_wrong_account(
    team: Team, django_capture_on_commit_callbacks: CaptureOnCommit
) -> None:
    _, token = invite(team, django_capture_on_commit_callbacks)
    client = Client()
    client.force_login(team.outsider)

    shown = client.get(PAGE_URL, {"token": token})
    refused = client.post(PAGE_URL, {"token": token})

    assert shown.status_code == 200
    assert "Accept the invitation" not in shown.content.decode()
    assert 'data-code="invitation_email_mismatch"' in shown.content.decode()
    assert refused.status_code == 403
    assert 'data-code="invitation_email_mismatch"' in refused.content.decode()
    assert "oscar" not in roles_of(team.organization)


@pytest.mark.parametrize(
    ("prepare", "status", "code"),
    [
        ("unknown", 400, "invitation_invalid"),
        ("expired", 410, "invitation_expired"),
        ("used", 410, "invitation_used"),
    ],
)
def test_the_page_explains_a_link_that_does_not_work(
    team: Team,
    browser: Client,
    django_capture_on_commit_callbacks: CaptureOnCommit,
    prepare: str,
    status: int,
    code: str,
) -> None:
    invitation, token = invite(team, django_capture_on_commit_callbacks)
    if prepare == "unknown":
        token = "not-a-token"
    elif prepare == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        Invitation.objects.filter(pk=invitation.pk).update(accepted_at=timezone.now())

    response = browser.get(PAGE_URL, {"token": token})

    assert response.status_code == status
    assert f'data-code="{code}"' in response.content.decode()
