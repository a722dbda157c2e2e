"""Organizations in the Django admin: policies decide, services write, the last owner stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, OrganizationRole, User
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import MembershipFactory, OrganizationFactory, UserFactory, totp_enrol
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

OWNER, ADMIN, MEMBER = (
    OrganizationRole.OWNER.value,
    OrganizationRole.ADMIN.value,
    OrganizationRole.MEMBER.value,
)
CHANGELIST_URL = "/admin/accounts/organization/"
ADD_URL = "/admin/accounts/organization/add/"


def change_url(organization: Organization) -> str:
    return f"/admin/accounts/organization/{organization.pk}/change/"


def staff(username: str, role: str) -> User:
    """A site admin or moderator with an authenticator app: staff must have a second factor."""
    user = user_set_roles(user=UserFactory.create(username=username), roles=[role])
    totp_enrol(user)
    return user


@pytest.fixture
def site_admin() -> User:
    return staff("sam", "admin")


@pytest.fixture
def admin_client(site_admin: User) -> Client:
    client = Client()
    client.force_login(site_admin)
    return client


@pytest.fixture
def organization() -> Organization:
    organization = OrganizationFactory.create(name="Acme", slug="acme")
    MembershipFactory.create(
        organization=organization, user=UserFactory.create(username="olivia"), role=OWNER
    )
    MembershipFactory.create(organization=organization, user=UserFactory.create(username="adam"), role=ADMIN)
    return organization


def roles_of(organization: Organization) -> dict[str, str]:
    return dict(Membership.objects.filter(organization=organization).values_list("user__username", "role"))


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def form_data(response: Any) -> dict[str, Any]:
    """The POST body the change form would send unchanged: its fields and every inline's rows."""
    assert response.status_code == 200
    data: dict[str, Any] = {"_save": "Save"}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        data[name] = "" if value is None else value
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        for row in formset.forms:
            for name in row.fields:
                value = row[name].value()
                if value not in (None, False, ""):
                    data[row.add_prefix(name)] = value
    return data


def row_of(data: dict[str, Any], username: str) -> str:
    """The form prefix of the membership row of `username`."""
    user = User.objects.get(username=username)
    [prefix] = [
        key.removesuffix("-user")
        for key, value in data.items()
        if key.startswith("memberships-") and key.endswith("-user") and str(value) == str(user.pk)
    ]
    return prefix


def add_row(data: dict[str, Any], user: User, role: str) -> None:
    index = int(data["memberships-TOTAL_FORMS"])
    data["memberships-TOTAL_FORMS"] = index + 1
    data[f"memberships-{index}-user"] = str(user.pk)
    data[f"memberships-{index}-role"] = role


def test_changelist_query_count_does_not_grow_with_organizations(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    def organizations(count: int) -> None:
        for _ in range(count):
            MembershipFactory.create_batch(3, organization=OrganizationFactory.create())

    organizations(5)
    with CaptureQueriesContext(connection) as five:
        response = admin_client.get(CHANGELIST_URL)
    assert [row.member_count for row in response.context["cl"].result_list] == [3] * 5
    organizations(45)

    with django_assert_max_num_queries(len(five)):
        response = admin_client.get(CHANGELIST_URL)

    assert response.context["cl"].result_count == 50
    assert {row.member_count for row in response.context["cl"].result_list} == {3}


def test_changelist_finds_organizations_by_member(admin_client: Client, organization: Organization) -> None:
    OrganizationFactory.create(name="Other")

    response = admin_client.get(CHANGELIST_URL, {"q": "olivia"})

    assert [row.pk for row in response.context["cl"].result_list] == [organization.pk]


def test_adding_a_member_through_the_inline_is_audited(
    admin_client: Client, site_admin: User, organization: Organization
) -> None:
    newcomer = UserFactory.create(username="pat")
    data = form_data(admin_client.get(change_url(organization)))
    add_row(data, newcomer, MEMBER)

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 302
    assert roles_of(organization) == {"olivia": OWNER, "adam": ADMIN, "pat": MEMBER}
    [event] = events("accounts.membership.created")
    assert (event.actor_id, event.target_id, event.changes, event.metadata) == (
        str(site_admin.pk),
        str(organization.pk),
        {"role": [None, MEMBER]},
        {"user": str(newcomer.pk)},
    )
    [logged] = events("admin.object.changed")
    assert "Added" in str(logged.metadata["change_message"])


def test_changing_a_role_through_the_inline_is_audited(
    admin_client: Client, organization: Organization
) -> None:
    data = form_data(admin_client.get(change_url(organization)))
    data[f"{row_of(data, 'adam')}-role"] = MEMBER

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 302
    assert roles_of(organization)["adam"] == MEMBER
    [event] = events("accounts.membership.role_changed")
    assert event.changes == {"role": [ADMIN, MEMBER]}


def test_handing_over_ownership_in_one_save(admin_client: Client, organization: Organization) -> None:
    data = form_data(admin_client.get(change_url(organization)))
    data[f"{row_of(data, 'olivia')}-role"] = MEMBER
    data[f"{row_of(data, 'adam')}-role"] = OWNER

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 302
    assert roles_of(organization) == {"olivia": MEMBER, "adam": OWNER}
    assert [event.changes for event in events("accounts.membership.role_changed")] == [
        {"role": [ADMIN, OWNER]},
        {"role": [OWNER, MEMBER]},
    ]


@pytest.mark.parametrize("change", ["demote", "delete"])
def test_the_admin_refuses_to_leave_the_organization_without_an_owner(
    admin_client: Client, organization: Organization, change: str
) -> None:
    data = form_data(admin_client.get(change_url(organization)))
    prefix = row_of(data, "olivia")
    if change == "demote":
        data[f"{prefix}-role"] = ADMIN
    else:
        data[f"{prefix}-DELETE"] = "on"
    before = (roles_of(organization), AuditEvent.objects.count())

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 200
    [formset] = [
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.prefix == "memberships"
    ]
    assert [error.code for error in formset.non_form_errors().as_data()] == ["last_owner"]
    assert (roles_of(organization), AuditEvent.objects.count()) == before


def bulk_members(organization: Organization, count: int, *, role: str = MEMBER, start: int = 0) -> None:
    users = User.objects.bulk_create(
        User(username=f"m_{n:04d}", display_name=f"m_{n:04d}", email=f"m_{n:04d}@example.com", password="!")
        for n in range(start, start + count)
    )
    Membership.objects.bulk_create(
        Membership(organization=organization, user=user, role=role) for user in users
    )


def membership_rows(response: Any) -> list[Any]:
    [formset] = [
        inline.formset
        for inline in response.context["inline_admin_formsets"]
        if inline.formset.prefix == "memberships"
    ]
    return list(formset.initial_forms)


def test_a_large_organization_shows_its_first_memberships_and_still_saves(
    admin_client: Client, organization: Organization
) -> None:
    """Past about 250 rows of form fields the page could not be saved at all (Django's
    DATA_UPLOAD_MAX_NUMBER_FIELDS): the page shows the first 100, owners and admins first."""
    bulk_members(organization, 300)
    Invitation.objects.bulk_create(
        Invitation(
            organization=organization,
            email=f"guest_{n}@example.com",
            role=MEMBER,
            token_hash=f"{n:064d}",
            expires_at=timezone.now() + timedelta(days=7),
        )
        for n in range(60)
    )

    page = admin_client.get(change_url(organization))

    rows = membership_rows(page)
    assert len(rows) == 100
    assert [row.instance.user.username for row in rows[:3]] == ["olivia", "adam", "m_0000"]
    content = page.content.decode()
    assert (
        "Memberships: the first 100 of 302, owners and admins first (all of them: the members link above)"
        in content
    )
    assert "Invitations: the newest 50 of 60 (managed through the API)" in content
    data = form_data(page)
    assert len(data) < 1000  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS
    data["name"] = "Acme Corporation"
    data[f"{row_of(data, 'm_0005')}-role"] = ADMIN

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 302, response.content[:2000]
    organization.refresh_from_db()
    assert organization.name == "Acme Corporation"
    assert Membership.objects.filter(organization=organization).count() == 302
    assert roles_of(organization)["m_0005"] == ADMIN
    assert [event.changes for event in events("accounts.membership.role_changed")] == [
        {"role": [MEMBER, ADMIN]}
    ]


def test_owners_past_the_rows_shown_count_for_the_last_owner_rule(
    admin_client: Client, organization: Organization
) -> None:
    bulk_members(organization, 100, role=OWNER)  # with olivia, 101 owners: she sorts last, not shown
    data = form_data(admin_client.get(change_url(organization)))
    shown_owners = [
        key.removesuffix("-role") for key, value in data.items() if key.endswith("-role") and value == OWNER
    ]
    assert len(shown_owners) == 100
    for prefix in shown_owners:
        data[f"{prefix}-role"] = MEMBER

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 302
    assert list(
        Membership.objects.filter(organization=organization, role=OWNER).values_list(
            "user__username", flat=True
        )
    ) == ["olivia"]


def test_a_service_refusal_rolls_the_whole_save_back(organization: Organization) -> None:
    """A moderator who is an organization admin may edit it, but not demote its owner."""
    moderator = staff("moe", "moderator")
    MembershipFactory.create(organization=organization, user=moderator, role=ADMIN)
    MembershipFactory.create(organization=organization, user=UserFactory.create(username="otto"), role=OWNER)
    client = Client()
    client.force_login(moderator)
    data = form_data(client.get(change_url(organization)))
    data["name"] = "Renamed"
    data[f"{row_of(data, 'olivia')}-role"] = MEMBER
    before = (roles_of(organization), AuditEvent.objects.count())

    response = client.post(change_url(organization), data)

    assert (response.status_code, response["Location"]) == (302, change_url(organization))
    assert [str(message) for message in get_messages(response.wsgi_request)] == [
        "You do not have permission to perform this action."
    ]
    organization.refresh_from_db()
    assert organization.name == "Acme"
    assert (roles_of(organization), AuditEvent.objects.count()) == before


def test_adding_an_organization_makes_the_chosen_user_its_owner(
    admin_client: Client, site_admin: User
) -> None:
    olivia, pat = UserFactory.create(username="olivia"), UserFactory.create(username="pat")
    data = form_data(admin_client.get(ADD_URL))
    data.update(name="Acme", slug="Acme-Labs", description="Rockets.")
    add_row(data, pat, MEMBER)
    add_row(data, olivia, OWNER)

    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 302
    organization = Organization.objects.get()
    assert (organization.name, organization.slug) == ("Acme", "acme-labs")
    assert roles_of(organization) == {"olivia": OWNER, "pat": MEMBER}
    [created] = events("accounts.organization.created")
    assert (created.actor_id, created.target_id) == (str(site_admin.pk), str(organization.pk))
    assert [event.metadata["user"] for event in events("accounts.membership.created")] == [
        str(olivia.pk),
        str(pat.pk),
    ]
    [logged] = events("admin.object.added")
    assert logged.target_id == str(organization.pk)


def test_adding_an_organization_without_an_owner_is_refused(admin_client: Client) -> None:
    data = form_data(admin_client.get(ADD_URL))
    data.update(name="Acme", slug="acme")
    add_row(data, UserFactory.create(username="pat"), ADMIN)

    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 200
    assert not Organization.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="accounts.organization").count() == 0


def test_an_invalid_slug_is_a_form_error(admin_client: Client, organization: Organization) -> None:
    data = form_data(admin_client.get(change_url(organization)))
    data["slug"] = "acme_labs"

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"] == [
        "Use lowercase letters, digits and single hyphens between them."
    ]
    organization.refresh_from_db()
    assert organization.slug == "acme"


def test_renaming_in_the_admin_goes_through_the_service(
    admin_client: Client, organization: Organization
) -> None:
    data = form_data(admin_client.get(change_url(organization)))
    data["name"] = "Acme Corp"

    response = admin_client.post(change_url(organization), data)

    assert response.status_code == 302
    [event] = events("accounts.organization.updated")
    assert event.changes == {"name": ["Acme", "Acme Corp"]}


def test_deleting_in_the_admin_is_audited(admin_client: Client, organization: Organization) -> None:
    response = admin_client.post(f"/admin/accounts/organization/{organization.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Organization.objects.exists()
    [event] = events("accounts.organization.deleted")
    assert event.metadata == {"members": 2, "open_invitations": 0}


def test_invitations_show_their_state_and_never_a_token(
    admin_client: Client, organization: Organization
) -> None:
    inviter = Membership.objects.get(role=OWNER).user
    now = timezone.now()
    for email, expires_at, revoked_at in [
        ("soon@example.com", now + timedelta(days=1), None),
        ("late@example.com", now - timedelta(days=1), None),
        ("gone@example.com", now + timedelta(days=1), now),
    ]:
        Invitation.objects.create(
            organization=organization,
            email=email,
            token_hash=f"{email:0>64}"[-64:],
            invited_by=inviter,
            expires_at=expires_at,
            revoked_at=revoked_at,
        )

    response = admin_client.get(change_url(organization))

    page = response.content.decode()
    for state in ("Pending", "Expired", "Revoked"):
        assert f"<p>{state}</p>" in page
    for invitation in Invitation.objects.all():
        assert invitation.token_hash not in page


def test_a_moderator_sees_organizations_but_changes_nothing(organization: Organization) -> None:
    moderator = staff("moe", "moderator")
    client = Client()
    client.force_login(moderator)
    before = (roles_of(organization), AuditEvent.objects.count())

    listed = client.get(CHANGELIST_URL)
    shown = client.get(change_url(organization))
    posted = client.post(change_url(organization), {"name": "Renamed", "slug": "renamed"})
    adding = client.get(ADD_URL)
    deleting = client.post(f"/admin/accounts/organization/{organization.pk}/delete/", {"post": "yes"})

    assert listed.status_code == 200
    assert shown.status_code == 200
    assert shown.context["has_change_permission"] is False
    assert (posted.status_code, adding.status_code, deleting.status_code) == (403, 403, 403)
    organization.refresh_from_db()
    assert organization.name == "Acme"
    assert (roles_of(organization), AuditEvent.objects.count()) == before


# --- every membership, on its own list ----------------------------------------------------------

MEMBERSHIPS_URL = "/admin/accounts/membership/"


def membership_url(membership: Membership) -> str:
    return f"{MEMBERSHIPS_URL}{membership.pk}/change/"


def membership_of(organization: Organization, username: str) -> Membership:
    return Membership.objects.get(organization=organization, user__username=username)


def test_the_organizations_page_links_every_member_and_the_list_finds_them(
    admin_client: Client, organization: Organization, django_assert_max_num_queries: Any
) -> None:
    bulk_members(organization, 300)
    other = OrganizationFactory.create(name="Other", slug="other")
    MembershipFactory.create(organization=other, user=UserFactory.create(username="zoe"), role=OWNER)
    link = f"{MEMBERSHIPS_URL}?organization={organization.pk}"
    assert (
        f'<a href="{link}">All 302 members</a>' in admin_client.get(change_url(organization)).content.decode()
    )

    admin_client.get(link)
    with django_assert_max_num_queries(20):
        listed = admin_client.get(link)
    found = admin_client.get(link, {"q": "m_0150"})
    elsewhere = admin_client.get(MEMBERSHIPS_URL, {"q": "zoe"})
    nonsense = admin_client.get(MEMBERSHIPS_URL, {"organization": "not-a-uuid"})

    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 302
    assert len(listed.context["cl"].result_list) == 100
    assert [row.user.username for row in found.context["cl"].result_list] == ["m_0150"]
    assert [row.organization.slug for row in elsewhere.context["cl"].result_list] == ["other"]
    assert (nonsense.status_code, nonsense.context["cl"].result_count) == (200, 0)


def test_a_role_changed_on_the_membership_page_goes_through_the_service(
    admin_client: Client, organization: Organization
) -> None:
    adam = membership_of(organization, "adam")

    response = admin_client.post(membership_url(adam), {"role": OWNER, "_save": "Save"})

    assert response.status_code == 302
    assert roles_of(organization)["adam"] == OWNER
    [changed] = events("accounts.membership.role_changed")
    assert changed.changes == {"role": [ADMIN, OWNER]}


def test_the_last_owner_cannot_be_demoted_or_removed_on_the_memberships_list(
    admin_client: Client, organization: Organization
) -> None:
    olivia = membership_of(organization, "olivia")
    before = (roles_of(organization), AuditEvent.objects.count())

    demoted = admin_client.post(membership_url(olivia), {"role": MEMBER, "_save": "Save"})
    removed = admin_client.post(f"{MEMBERSHIPS_URL}{olivia.pk}/delete/", {"post": "yes"})
    bulk = admin_client.post(
        MEMBERSHIPS_URL,
        {
            "action": "delete_selected",
            "_selected_action": [str(olivia.pk), str(membership_of(organization, "adam").pk)],
            "post": "yes",
        },
    )

    for response in (demoted, removed, bulk):
        assert response.status_code == 302
        assert any("last owner" in str(message) for message in get_messages(response.wsgi_request))
    assert (roles_of(organization), AuditEvent.objects.count()) == before  # adam stayed too


def test_removing_and_adding_members_on_the_memberships_list_is_audited(
    admin_client: Client, organization: Organization
) -> None:
    adam = membership_of(organization, "adam")
    newcomer = UserFactory.create(username="nina")

    removed = admin_client.post(f"{MEMBERSHIPS_URL}{adam.pk}/delete/", {"post": "yes"})
    added = admin_client.post(
        f"{MEMBERSHIPS_URL}add/",
        {"organization": str(organization.pk), "user": str(newcomer.pk), "role": MEMBER, "_save": "Save"},
    )
    twice = admin_client.post(
        f"{MEMBERSHIPS_URL}add/",
        {"organization": str(organization.pk), "user": str(newcomer.pk), "role": ADMIN, "_save": "Save"},
    )

    assert (removed.status_code, added.status_code) == (302, 302)
    assert roles_of(organization) == {"olivia": OWNER, "nina": MEMBER}
    assert [event.target_id for event in events("accounts.membership.removed")] == [str(organization.pk)]
    assert len(events("accounts.membership.created")) == 1
    assert twice.status_code == 200  # the form again, with the model's uniqueness error
    assert "already exists" in twice.content.decode()
    assert roles_of(organization)["nina"] == MEMBER


def test_a_moderator_reads_the_memberships_list_and_changes_nothing(organization: Organization) -> None:
    moderator = staff("moe", "moderator")
    client = Client()
    client.force_login(moderator)
    adam = membership_of(organization, "adam")
    before = (roles_of(organization), AuditEvent.objects.count())

    listed = client.get(MEMBERSHIPS_URL)
    shown = client.get(membership_url(adam))
    posted = client.post(membership_url(adam), {"role": MEMBER, "_save": "Save"})
    removed = client.post(f"{MEMBERSHIPS_URL}{adam.pk}/delete/", {"post": "yes"})
    adding = client.get(f"{MEMBERSHIPS_URL}add/")

    assert (listed.status_code, shown.status_code) == (200, 200)
    assert shown.context["has_change_permission"] is False
    assert (posted.status_code, removed.status_code, adding.status_code) == (403, 403, 403)
    assert (roles_of(organization), AuditEvent.objects.count()) == before
