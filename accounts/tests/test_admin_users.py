"""The user admin as a staff tool: the API's columns, filters and search in a constant number of
queries, actions through the API's services, and the policies asked per user."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.models import UserSession
from django.contrib.admin.templatetags.admin_list import result_headers, results
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import formats, timezone
from django.utils.text import capfirst

from accounts.admin.users import UserAdmin
from accounts.models import DeviceSession, Role, User
from accounts.services import device_session_start
from accounts.services.moderation import user_deactivate, user_set_roles
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory, mark_reauthenticated, totp_enrol
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "/admin/accounts/user/"
TIMELINE_URL = "/admin/audit/auditevent/"
# A changelist page, whatever the number of users: the session and the signed-in user (2), the MFA
# requirement's look at the staff member's own second factors (1), allauth's browser-session
# tracking (5: savepoint, session, user, update, release), the count, the page, and the page's roles,
# social accounts, verified primary addresses and second factors (6).
CHANGELIST_QUERIES = 14
ACTIONS = (
    "deactivate_users",
    "lock_down_users",
    "reactivate_users",
    "sign_out_users_everywhere",
    "send_password_reset",
    "resend_verification",
    "mark_email_verified",
    "reset_mfa",
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


# --- people and records ---------------------------------------------------------------------------


def with_roles(user: User, *roles: str) -> User:
    return user_set_roles(user=user, roles=roles)


def member(username: str = "member", **fields: Any) -> User:
    """A plain user, as sign-up makes them: the `user` role and a primary e-mail address."""
    verified = fields.pop("verified", True)
    user = with_roles(UserFactory.create(username=username, **fields))
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=verified)
    return user


def signed_in_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin() -> User:
    """An admin with an authenticator app: staff must have a second factor to reach the admin."""
    admin = with_roles(UserFactory.create(username="root"), Role.ADMIN)
    totp_enrol(admin)
    return admin


@pytest.fixture
def moderator() -> User:
    moderator = with_roles(UserFactory.create(username="mod"), Role.MODERATOR)
    totp_enrol(moderator)
    return moderator


@pytest.fixture
def admin_client(admin: User) -> Client:
    return signed_in_client(admin)


@pytest.fixture
def moderator_client(moderator: User) -> Client:
    return signed_in_client(moderator)


def device_session(user: User) -> DeviceSession:
    session, _ = device_session_start(user=user, user_agent="okhttp/4.12", ip_address="203.0.113.7")
    return session


def browser_session(user: User, session_key: str) -> UserSession:
    return UserSession.objects.create(
        user=user, ip="198.51.100.4", session_key=session_key, user_agent=FIREFOX
    )


def bulk_users(count: int, *, start: int = 0) -> list[User]:
    """`count` users with roles, e-mail addresses, second factors and social accounts, in bulk."""
    users = User.objects.bulk_create(
        User(
            username=f"bulk_{number:04d}",
            display_name=f"bulk_{number:04d}",
            email=f"bulk_{number:04d}@example.com",
            password="!",  # unusable
        )
        for number in range(start, start + count)
    )
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in (Role.USER, Role.TESTER)}
    membership = User.groups.through
    membership.objects.bulk_create(
        [membership(user_id=user.pk, group_id=groups[Role.USER].pk) for user in users]
        + [membership(user_id=user.pk, group_id=groups[Role.TESTER].pk) for user in users[::3]]
    )
    EmailAddress.objects.bulk_create(
        EmailAddress(user=user, email=user.email, primary=True, verified=number % 2 == 0)
        for number, user in enumerate(users)
    )
    Authenticator.objects.bulk_create(Authenticator(user=user, type="totp", data={}) for user in users[::5])
    SocialAccount.objects.bulk_create(
        SocialAccount(user=user, provider="github", uid=user.username) for user in users[::7]
    )
    return users


# --- reading responses -----------------------------------------------------------------------------


def listed(response: Any) -> list[str]:
    assert response.status_code == 200
    return [user.username for user in response.context["cl"].result_list]


def cell_text(cell: str) -> str:
    """A changelist cell as text; a boolean icon as its alt text (True, False or None)."""
    cell = re.sub(r'<img [^>]*alt="(\w+)"[^>]*>', r"\1", cell)
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def table(response: Any) -> tuple[list[str], dict[str, list[str]]]:
    """The changelist's column headers, and each row's cells by username (the checkbox left out)."""
    changelist = response.context["cl"]
    headers = [capfirst(cell_text(str(header["text"]))) for header in result_headers(changelist)][1:]
    rows = [[cell_text(cell) for cell in row][1:] for row in results(changelist)]
    return headers, {row[0]: row for row in rows}


def shown(when: datetime | None) -> str:
    """A date as the changelist shows it."""
    return formats.localize(timezone.localtime(when)) if when else "never"


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def events(action: str) -> list[AuditEvent]:
    """The events of `action` recorded by a signed-in person (not the fixtures' set-up)."""
    return list(AuditEvent.objects.filter(action=action).exclude(actor_id="").order_by("id"))


def events_about(*users: User) -> list[tuple[str, str]]:
    """Every event about these users but sign-ins."""
    return list(
        AuditEvent.objects.filter(target_id__in=[str(user.pk) for user in users])
        .exclude(action="accounts.user.signed_in")
        .order_by("id")
        .values_list("action", "target_id")
    )


def state(*users: User) -> list[list[dict[str, Any]]]:
    """Everything the actions or the change form could touch, to assert that nothing changed."""
    ids = [user.pk for user in users]
    return [
        list(User.objects.filter(pk__in=ids).order_by("pk").values()),
        list(User.groups.through.objects.filter(user_id__in=ids).order_by("pk").values()),
        list(EmailAddress.objects.filter(user_id__in=ids).order_by("pk").values()),
        list(DeviceSession.objects.filter(user_id__in=ids).order_by("pk").values()),
        # Not `last_seen_at`: a signed-in caller's own browser session moves with every request.
        list(UserSession.objects.filter(user_id__in=ids).order_by("pk").values("pk", "session_key", "ip")),
    ]


# --- posting forms ---------------------------------------------------------------------------------


def run_action(client: Client, action: str, *users: User, **data: str) -> Any:
    """Pick an action in the changelist's menu for the selected users and press "Go"."""
    selected = [str(user.pk) for user in users]
    return client.post(CHANGELIST_URL, {"action": action, "_selected_action": selected, "index": "0", **data})


def confirm(client: Client, action: str, *users: User, reason: str) -> Any:
    """Submit the confirmation page of an action that asks for a reason."""
    selected = [str(user.pk) for user in users]
    return client.post(
        CHANGELIST_URL, {"action": action, "_selected_action": selected, "post": "yes", "reason": reason}
    )


def change_url(user: User) -> str:
    return f"{CHANGELIST_URL}{user.pk}/change/"


def change_form_data(client: Client, user: User) -> dict[str, Any]:
    """What the change page's form posts when submitted untouched: its fields and the inlines'."""
    response = client.get(change_url(user))
    assert response.status_code == 200
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data: dict[str, Any] = {}
    for form in forms:
        for field in form:
            value = field.value()
            if value is None or value is False:
                continue
            data[field.html_name] = "on" if value is True else value
    return data


# --- the changelist --------------------------------------------------------------------------------


def test_the_changelist_shows_each_users_state(admin_client: Client, admin: User) -> None:
    signed_in = datetime(2025, 3, 4, 5, 6, tzinfo=UTC)
    alice = with_roles(member("alice"), Role.TESTER)
    Authenticator.objects.create(user=alice, type="totp", data={})
    bob = member("bob", verified=False, is_active=False)
    joined = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    User.objects.filter(pk__in=[alice.pk, bob.pk]).update(created_at=joined)
    User.objects.filter(pk=alice.pk).update(last_login=signed_in)

    response = admin_client.get(CHANGELIST_URL)

    headers, rows = table(response)
    assert headers == [
        "Username",
        "Email",
        "Verified",
        "Roles",
        "Active",
        "MFA",
        "Last sign-in",
        "Joined",
        "Audit",
    ]
    assert list(rows) == ["alice", "bob", "root"]
    assert rows["alice"] == [
        "alice",
        "alice@example.com",
        "True",
        "tester, user",
        "True",
        "True",
        shown(signed_in),
        shown(joined),
        "Timeline",
    ]
    assert rows["bob"] == [
        "bob",
        "bob@example.com",
        "False",
        "user",
        "False",
        "False",
        "never",
        shown(joined),
        "Timeline",
    ]
    admin.refresh_from_db()
    assert rows["root"] == [
        "root",
        "root@example.com",
        "False",
        "admin, user",
        "True",
        "True",  # staff must have a second factor
        shown(admin.last_login),
        shown(admin.created_at),
        "Timeline",
    ]
    content = response.content.decode()
    assert f'<a href="{TIMELINE_URL}?about_user={alice.pk}">Timeline</a>' in content


@pytest.fixture
def population(admin: User) -> dict[str, User]:
    """Users that differ in every way the filters look at (root, the admin, is one of them)."""
    now = timezone.now()
    alice = with_roles(member("alice"), Role.TESTER)
    Authenticator.objects.create(user=alice, type="totp", data={})
    SocialAccount.objects.create(user=alice, provider="github", uid="1001")
    bob = member("bob", verified=False, is_active=False)
    carol = with_roles(member("carol"), Role.MODERATOR)
    Authenticator.objects.create(user=carol, type="webauthn", data={"name": "YubiKey"})
    SocialAccount.objects.create(user=carol, provider="google", uid="2002")
    dave = with_roles(UserFactory.create(username="dave_smith", display_name="Dave Smith"))
    Authenticator.objects.create(user=dave, type="recovery_codes", data={})  # no factor on its own
    User.objects.filter(pk=bob.pk).update(created_at=now - timedelta(days=800))
    User.objects.filter(pk=carol.pk).update(created_at=now - timedelta(days=10))
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "root": admin}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["alice", "bob", "carol", "dave_smith", "root"]),
        ({"role": "tester"}, ["alice"]),
        ({"role": "moderator"}, ["carol"]),
        ({"role": "admin"}, ["root"]),
        ({"role": "user"}, ["alice", "bob", "carol", "dave_smith", "root"]),
        ({"is_active": "0"}, ["bob"]),
        ({"is_active": "1"}, ["alice", "carol", "dave_smith", "root"]),
        ({"email_verified": "1"}, ["alice", "carol"]),
        ({"email_verified": "0"}, ["bob", "dave_smith", "root"]),
        ({"has_mfa": "1"}, ["alice", "carol", "root"]),
        ({"has_mfa": "0"}, ["bob", "dave_smith"]),
        ({"social_provider": "github"}, ["alice"]),
        ({"social_provider": "google"}, ["carol"]),
        ({"social_provider": "gitlab"}, []),
        ({"joined": "7"}, ["alice", "dave_smith", "root"]),
        ({"joined": "30"}, ["alice", "carol", "dave_smith", "root"]),
        ({"joined": "older"}, ["bob"]),
        ({"q": "ali"}, ["alice"]),
        ({"q": "CAROL@EXAMPLE"}, ["carol"]),
        ({"q": "e s"}, ["dave_smith"]),  # the display name "Dave Smith" only
        ({"q": "example.com"}, ["alice", "bob", "carol", "dave_smith", "root"]),
        ({"q": "nobody"}, []),
        ({"q": "ca"}, ["carol"]),  # under three characters: the start of a value, not anywhere in it
        ({"role": "user", "is_active": "1", "has_mfa": "1", "q": "al"}, ["alice"]),
        ({"role": "user", "is_active": "1", "has_mfa": "1", "q": "aro"}, ["carol"]),
        ({"role": "user", "is_active": "1", "has_mfa": "1", "q": "li"}, []),
    ],
)
def test_filters_and_search_select_what_the_api_would(
    admin_client: Client, population: dict[str, User], params: dict[str, str], expected: list[str]
) -> None:
    assert listed(admin_client.get(CHANGELIST_URL, params)) == expected


def test_an_exact_joined_range_is_a_query_parameter(
    admin_client: Client, population: dict[str, User]
) -> None:
    now = timezone.now()
    response = admin_client.get(
        CHANGELIST_URL,
        {
            "created_at__gte": (now - timedelta(days=20)).isoformat(),
            "created_at__lt": (now - timedelta(days=5)).isoformat(),
        },
    )

    assert listed(response) == ["carol"]


@pytest.mark.parametrize("params", [{"role": "owner"}, {"is_active": "maybe"}, {"joined": "3"}])
def test_unknown_filter_values_are_refused(
    admin_client: Client, population: dict[str, User], params: dict[str, str]
) -> None:
    response = admin_client.get(CHANGELIST_URL, params)

    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST_URL}?e=1"


def test_the_sidebar_offers_every_filter(admin_client: Client, population: dict[str, User]) -> None:
    response = admin_client.get(CHANGELIST_URL)
    by_provider = admin_client.get(CHANGELIST_URL, {"social_provider": "github"})

    assert [spec.title for spec in by_provider.context["cl"].filter_specs] == [
        "role",
        "active",
        "e-mail verified",
        "two-factor authentication",
        "social provider",
        "joined",
    ]
    content = response.content.decode()
    for link in ("?role=moderator", "?email_verified=1", "?has_mfa=0", "?joined=30", "?is_active=0"):
        assert f'href="{link}"' in content
    # No provider is installed here: the sidebar offers the one a link asked for.
    assert 'href="?social_provider=github"' not in content
    assert 'href="?social_provider=github"' in by_provider.content.decode()


def test_a_page_of_users_costs_the_same_queries_for_10_or_1000_users(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    bulk_users(9)  # and root
    admin_client.get(CHANGELIST_URL)  # the first page after signing in also records the browser session
    with django_assert_max_num_queries(CHANGELIST_QUERIES), CaptureQueriesContext(connection) as ten:
        few = admin_client.get(CHANGELIST_URL)
    filtered = {"role": "user", "email_verified": "1", "has_mfa": "1", "q": "bulk"}
    with django_assert_max_num_queries(CHANGELIST_QUERIES):
        few_filtered = admin_client.get(CHANGELIST_URL, filtered)

    bulk_users(990, start=9)
    with django_assert_max_num_queries(CHANGELIST_QUERIES), CaptureQueriesContext(connection) as thousand:
        many = admin_client.get(CHANGELIST_URL)
    with django_assert_max_num_queries(CHANGELIST_QUERIES):
        many_filtered = admin_client.get(CHANGELIST_URL, filtered)

    assert len(ten.captured_queries) == len(thousand.captured_queries) == CHANGELIST_QUERIES
    assert (len(listed(few)), len(listed(many))) == (10, 100)
    assert listed(few_filtered) == ["bulk_0000"]
    matching = User.objects.with_role(Role.USER).with_email_verified(True).with_mfa(True).search("bulk")
    assert many_filtered.context["cl"].result_count == matching.count() == 100
    assert many.context["cl"].result_count == 1000
    counts = [query["sql"] for query in thousand.captured_queries if "COUNT(" in query["sql"].upper()]
    assert len(counts) == 1  # the paginator's; no second count of the whole table
    _, rows = table(many)
    assert rows["bulk_0003"][2:6] == ["False", "tester, user", "True", "False"]


def test_a_moderators_page_costs_three_more_queries_for_their_own_roles_and_permissions(
    moderator_client: Client, django_assert_max_num_queries: Any
) -> None:
    bulk_users(999)
    moderator_client.get(CHANGELIST_URL)

    # Their roles (the policies), and Django's own permissions of theirs, asked where a rule says no.
    with django_assert_max_num_queries(CHANGELIST_QUERIES + 3):
        response = moderator_client.get(CHANGELIST_URL)

    assert len(listed(response)) == 100


def test_the_change_page_costs_the_same_queries_for_many_related_records(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    user = member("busy")

    def add_records(count: int) -> None:
        for _ in range(count):
            number = EmailAddress.objects.filter(user=user).count()
            EmailAddress.objects.create(user=user, email=f"busy{number}@example.org", verified=True)
            SocialAccount.objects.create(user=user, provider="github", uid=f"busy-{number}")
            Authenticator.objects.create(user=user, type="webauthn", data={"name": f"Key {number}"})
            device_session(user)
            browser_session(user, f"busy-session-{number}")

    add_records(2)
    admin_client.get(change_url(user))
    with CaptureQueriesContext(connection) as few:
        admin_client.get(change_url(user))
    add_records(8)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = admin_client.get(change_url(user))

    assert len(few.captured_queries) <= 25
    counts = {
        inline.opts.model.__name__: len(inline.formset.forms)
        for inline in response.context["inline_admin_formsets"]
    }
    assert counts == {
        "EmailAddress": 11,
        "SocialAccount": 10,
        "Authenticator": 10,
        "DeviceSession": 10,
        "UserSession": 10,
    }


def test_a_user_with_hundreds_of_sessions_gets_a_page_that_still_saves(admin_client: Client) -> None:
    """Each listed record is a form field or two; with every row shown, some 500 device sessions
    made a page Django refused to save (DATA_UPLOAD_MAX_NUMBER_FIELDS)."""
    user = member("busy")
    sessions = [device_session(user) for _ in range(520)]
    newest = DeviceSession.objects.filter(pk__in=[session.pk for session in sessions]).order_by(
        "-last_used_at"
    )

    page = admin_client.get(change_url(user))

    listed = {
        inline.opts.model.__name__: [form.instance.pk for form in inline.formset.forms]
        for inline in page.context["inline_admin_formsets"]
    }
    assert listed["DeviceSession"] == list(newest.values_list("pk", flat=True)[:50])
    assert "App device sessions: the first 50 of 520" in page.content.decode()
    assert "E-mail addresses:" not in page.content.decode()  # a short list says nothing
    data = change_form_data(admin_client, user)
    assert len(data) < 1000
    data["description"] = "Busy on many phones."

    response = admin_client.post(change_url(user), data)

    assert response.status_code == 302
    assert User.objects.get(pk=user.pk).description == "Busy on many phones."


# --- the change page -------------------------------------------------------------------------------


def test_the_change_page_shows_related_records_and_no_secrets(
    admin_client: Client, moderator_client: Client
) -> None:
    user = member("ada")
    secondary = EmailAddress.objects.create(user=user, email="ada@work.example", verified=False)
    social = SocialAccount.objects.create(
        user=user, provider="github", uid="4242", extra_data={"login": "ada"}
    )
    Authenticator.objects.create(user=user, type="totp", data={"secret": "JBSWY3DPEHPK3PXP"})
    Authenticator.objects.create(user=user, type="recovery_codes", data={"seed": "c2VlZC1zZWNyZXQ"})
    device = device_session(user)
    browser_session(user, "browser-session-key-secret")

    response = admin_client.get(change_url(user))

    assert response.status_code == 200
    inlines = {
        inline.opts.model.__name__: [
            {
                name: str(getattr(form.instance, name, ""))
                for name in ("email", "provider", "type", "label", "ip")
            }
            for form in inline.formset.forms
        ]
        for inline in response.context["inline_admin_formsets"]
    }
    assert [row["email"] for row in inlines["EmailAddress"]] == ["ada@example.com", "ada@work.example"]
    assert [row["provider"] for row in inlines["SocialAccount"]] == ["github"]
    assert [row["type"] for row in inlines["Authenticator"]] == ["recovery_codes", "totp"]
    assert [row["label"] for row in inlines["DeviceSession"]] == ["okhttp"]
    assert [row["ip"] for row in inlines["UserSession"]] == ["198.51.100.4"]
    content = response.content.decode()
    for secret in ("JBSWY3DPEHPK3PXP", "c2VlZC1zZWNyZXQ", "browser-session-key-secret", device.refresh_jti):
        assert secret not in content
    assert "Firefox on Linux" in content
    assert "authenticator app (TOTP) x1, recovery codes" in content
    assert f'href="{TIMELINE_URL}?about_user={user.pk}"' in content
    assert f'href="/admin/account/emailaddress/{secondary.pk}/change/"' in content
    assert f'href="/admin/socialaccount/socialaccount/{social.pk}/change/"' in content
    for authenticator in Authenticator.objects.filter(user=user):
        assert f"/admin/mfa/authenticator/{authenticator.pk}/change/" not in content
    for user_session in UserSession.objects.filter(user=user):
        assert f"/admin/usersessions/usersession/{user_session.pk}/change/" not in content
    assert "/password/" not in content
    moderator_page = moderator_client.get(change_url(user)).content.decode()
    assert f'href="/admin/account/emailaddress/{secondary.pk}/change/"' not in moderator_page
    assert f'href="/admin/socialaccount/socialaccount/{social.pk}/change/"' in moderator_page
    assert moderator_client.get(f"/admin/socialaccount/socialaccount/{social.pk}/change/").status_code == 200
    assert moderator_client.get(f"/admin/account/emailaddress/{secondary.pk}/change/").status_code == 403


def test_the_change_form_saves_the_profile_through_the_service(admin_client: Client, admin: User) -> None:
    user = member("member")
    data = change_form_data(admin_client, user)

    response = admin_client.post(change_url(user), {**data, "username": "member_two", "description": "Helps"})

    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.username, user.display_name, user.description) == ("member_two", "member_two", "Helps")
    [updated] = events("accounts.user.updated")
    assert (updated.actor_id, updated.target_id) == (str(admin.pk), str(user.pk))
    assert updated.changes == {
        "username": ["member", "member_two"],
        "display_name": ["member", "member_two"],
        "description": ["", "Helps"],
    }
    [mirrored] = events("admin.object.changed")
    assert mirrored.changes == {
        "username": ["member", "member_two"],
        "description": ["", "Helps"],
    }


def test_the_change_form_refuses_a_display_name_that_does_not_match(admin_client: Client) -> None:
    user = member("member")
    before = state(user)

    response = admin_client.post(
        change_url(user), {**change_form_data(admin_client, user), "display_name": "Other"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["display_name"] == [
        "The display name may differ from the username only by letter case and spaces."
    ]
    assert state(user) == before
    assert events("accounts.user.updated") == []


def test_flags_groups_and_the_email_address_are_not_editable(admin_client: Client) -> None:
    user = member("member")
    moderators = Group.objects.get(name=Role.MODERATOR)
    before = state(user)
    data = change_form_data(admin_client, user)

    response = admin_client.post(
        change_url(user),
        {
            **data,
            "is_staff": "on",
            "is_superuser": "on",
            "groups": [str(moderators.pk)],
            "email": "new@example.com",
            "deactivation_reason": "forged",
        },
    )

    assert response.status_code == 302
    assert state(user) == before
    page = admin_client.get(change_url(user)).content.decode()
    for field in ("is_staff", "is_superuser", "is_active", "groups", "user_permissions", "email", "password"):
        assert f'name="{field}"' not in page


def test_admins_change_roles_through_the_service(admin_client: Client, admin: User) -> None:
    user = member("member")
    mark_reauthenticated(admin_client)  # role changes are a step-up action

    response = admin_client.post(
        change_url(user), {**change_form_data(admin_client, user), "roles": [Role.MODERATOR, Role.USER]}
    )

    assert response.status_code == 302
    user = User.objects.get(pk=user.pk)
    assert (user.roles, user.is_staff, user.is_superuser) == (["moderator", "user"], True, False)
    [changed] = events("accounts.user.roles_changed")
    assert (changed.actor_id, changed.target_id) == (str(admin.pk), str(user.pk))
    assert changed.changes == {"roles": [["user"], ["moderator", "user"]]}
    [mirrored] = events("admin.object.changed")
    assert mirrored.changes == {"roles": [["user"], ["moderator", "user"]]}


def test_an_admin_cannot_remove_their_own_admin_role(admin_client: Client, admin: User) -> None:
    mark_reauthenticated(admin_client)
    data = change_form_data(admin_client, admin)
    before = state(admin)

    response = admin_client.post(change_url(admin), {**data, "roles": [Role.USER], "description": "Demoted"})

    assert response.status_code == 302
    assert response["Location"] == change_url(admin)
    assert messages_of(response) == ["You cannot remove your own admin role."]
    assert state(admin) == before  # the description too: all or nothing
    assert events("accounts.user.roles_changed") == []
    assert events("admin.object.changed") == []


def test_the_add_page_creates_a_user_through_the_service(admin_client: Client, admin: User) -> None:
    response = admin_client.post(
        f"{CHANGELIST_URL}add/",
        {
            "username": "newcomer",
            "email": "Newcomer@Example.COM",
            "password1": DEFAULT_PASSWORD,
            "password2": DEFAULT_PASSWORD,
        },
    )

    user = User.objects.get(username="newcomer")
    assert response.status_code == 302
    assert response["Location"] == change_url(user)
    assert (user.email, user.display_name, user.roles, user.is_staff) == (
        "Newcomer@example.com",
        "newcomer",
        ["user"],
        False,
    )
    assert user.check_password(DEFAULT_PASSWORD)
    assert list(EmailAddress.objects.filter(user=user).values_list("email", "primary", "verified")) == [
        ("newcomer@example.com", True, False)
    ]
    [added] = events("admin.object.added")
    assert (added.actor_id, added.target_id, added.changes) == (str(admin.pk), str(user.pk), {})
    every_event = json.dumps(list(AuditEvent.objects.values("changes", "metadata")))
    assert DEFAULT_PASSWORD not in every_event


def test_the_add_page_refuses_a_taken_email_address(admin_client: Client) -> None:
    member("member")
    before = User.objects.count()

    response = admin_client.post(
        f"{CHANGELIST_URL}add/",
        {
            "username": "other",
            "email": "MEMBER@example.com",
            "password1": DEFAULT_PASSWORD,
            "password2": DEFAULT_PASSWORD,
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["email"] == [
        "A user with this e-mail address already exists."
    ]
    assert User.objects.count() == before


def test_staff_cannot_set_a_users_password_in_the_admin(admin_client: Client) -> None:
    user = member("member")

    response = admin_client.post(
        f"{change_url(user).removesuffix('change/')}password/",
        {"password1": "Another-pass-0001", "password2": "Another-pass-0001"},
    )

    assert response.status_code in (302, 404)
    user.refresh_from_db()
    assert user.check_password(DEFAULT_PASSWORD)


# --- actions ---------------------------------------------------------------------------------------


def test_deactivate_asks_for_a_reason_then_deactivates(admin_client: Client, admin: User) -> None:
    user = member("member")
    session = device_session(user)

    asked = run_action(admin_client, "deactivate_users", user)

    assert asked.status_code == 200
    assert asked.templates[0].name == "admin/accounts/user/action_confirmation.html"
    assert asked.context["users"] == [user]
    page = asked.content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    assert 'name="reason"' in page
    assert f'<input type="hidden" name="_selected_action" value="{user.pk}">' in page
    assert User.objects.get(pk=user.pk).is_active is True

    done = confirm(admin_client, "deactivate_users", user, reason="Spam from this account")

    assert done.status_code == 302
    assert done["Location"] == CHANGELIST_URL
    assert messages_of(done) == ["Deactivated member."]
    user.refresh_from_db()
    assert (user.is_active, user.deactivation_reason) == (False, "Spam from this account")
    session.refresh_from_db()
    assert session.revoke_reason == DeviceSession.RevokeReason.DEACTIVATED
    [deactivated] = events("accounts.user.deactivated")
    assert (deactivated.actor_id, deactivated.target_id, deactivated.metadata) == (
        str(admin.pk),
        str(user.pk),
        {
            "reason": "Spam from this account",
            "revoked": {
                "device_sessions": 1,
                "browser_sessions": 0,
                "oauth_access": 0,
                "oauth_refresh": 0,
                "oauth_authorization_codes": 0,
            },
        },
    )


def test_deactivate_without_a_reason_asks_again(admin_client: Client) -> None:
    user = member("member")
    before = state(user)

    response = confirm(admin_client, "deactivate_users", user, reason="  ")

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    assert state(user) == before
    assert events_about(user) == []


def test_lock_down_deactivates_and_ends_every_session(admin_client: Client, admin: User) -> None:
    user = member("member")
    session = device_session(user)
    browser_session(user, "member-browser")
    mark_reauthenticated(admin_client)  # lock-down is a step-up action

    asked = run_action(admin_client, "lock_down_users", user)
    done = confirm(admin_client, "lock_down_users", user, reason="Account taken over")

    assert asked.status_code == 200
    assert messages_of(done) == ["Locked down member."]
    user.refresh_from_db()
    assert (user.is_active, user.deactivation_reason) == (False, "Account taken over")
    session.refresh_from_db()
    assert session.revoke_reason == DeviceSession.RevokeReason.STAFF
    assert not UserSession.objects.filter(user=user).exists()
    [locked] = events("accounts.user.locked_down")
    assert (locked.actor_id, locked.target_id) == (str(admin.pk), str(user.pk))
    assert locked.metadata["reason"] == "Account taken over"
    assert locked.metadata["revoked"]["device_sessions"] == 1
    assert locked.metadata["revoked"]["browser_sessions"] == 1


def test_reactivate_restores_deactivated_users_and_skips_active_ones(
    admin_client: Client, admin: User
) -> None:
    inactive = member("inactive")
    user_deactivate(user=inactive, reason="Spam")
    active = member("active")

    response = run_action(admin_client, "reactivate_users", inactive, active)

    assert response.status_code == 302
    assert messages_of(response) == [
        "Reactivated inactive.",
        "Nothing to do for active: already active.",
    ]
    inactive.refresh_from_db()
    assert (inactive.is_active, inactive.deactivation_reason) == (True, "")
    [reactivated] = events("accounts.user.reactivated")
    assert (reactivated.actor_id, reactivated.target_id) == (str(admin.pk), str(inactive.pk))


def test_sign_out_everywhere_ends_sessions_and_keeps_the_user_active(
    admin_client: Client, admin: User
) -> None:
    user = member("member")
    session = device_session(user)
    browser_session(user, "member-browser")

    response = run_action(admin_client, "sign_out_users_everywhere", user)

    assert messages_of(response) == ["Signed member out everywhere."]
    user.refresh_from_db()
    assert user.is_active is True
    session.refresh_from_db()
    assert session.revoked_at is not None
    assert not UserSession.objects.filter(user=user).exists()
    [signed_out] = events("accounts.user.signed_out_everywhere")
    assert (signed_out.actor_id, signed_out.target_id) == (str(admin.pk), str(user.pk))
    assert signed_out.metadata["revoked"]["device_sessions"] == 1


def test_send_password_reset_emails_a_link(
    admin_client: Client, admin: User, django_capture_on_commit_callbacks: Any
) -> None:
    user = member("member")

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "send_password_reset", user)

    assert messages_of(response) == ["Sent a password reset link to member."]
    [message] = mail.outbox
    assert message.to == ["member@example.com"]
    assert "/accounts/password/reset/key/" in message.body
    [sent] = events("accounts.user.password_reset_sent")
    assert (sent.actor_id, sent.target_id, sent.metadata) == (
        str(admin.pk),
        str(user.pk),
        {"email": "member@example.com"},
    )


def test_send_password_reset_reports_users_the_service_refuses(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    inactive = member("inactive")
    user_deactivate(user=inactive)
    nobody = with_roles(UserFactory.create(username="no_address"))

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "send_password_reset", inactive, nobody)

    assert response.status_code == 302
    assert messages_of(response) == [
        "Refused for inactive: This account is deactivated.",
        "Refused for no_address: This user has no e-mail address.",
    ]
    assert mail.outbox == []
    assert events("accounts.user.password_reset_sent") == []


def test_resend_verification_emails_unverified_users_only(
    admin_client: Client, admin: User, django_capture_on_commit_callbacks: Any
) -> None:
    unverified = member("unverified", verified=False)
    verified = member("verified")

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(admin_client, "resend_verification", unverified, verified)

    assert messages_of(response) == [
        "Resent the verification e-mail to unverified.",
        "Refused for verified: This e-mail address is already verified.",
    ]
    assert [message.to for message in mail.outbox] == [["unverified@example.com"]]
    [resent] = events("accounts.user.verification_resent")
    assert (resent.actor_id, resent.target_id) == (str(admin.pk), str(unverified.pk))


def test_mark_email_verified_verifies_the_primary_address(admin_client: Client, admin: User) -> None:
    user = member("member", verified=False)

    response = run_action(admin_client, "mark_email_verified", user)

    assert messages_of(response) == ["Verified the e-mail address of member."]
    assert EmailAddress.objects.get(user=user).verified is True
    [verified] = events("accounts.user.email_marked_verified")
    assert (verified.actor_id, verified.target_id, verified.changes) == (
        str(admin.pk),
        str(user.pk),
        {"email_verified": [False, True]},
    )


def test_admins_cannot_deactivate_or_lock_down_themselves(admin_client: Client, admin: User) -> None:
    mark_reauthenticated(admin_client)
    admin_client.get(CHANGELIST_URL)
    before = state(admin)
    trail = events_about(admin)

    deactivated = confirm(admin_client, "deactivate_users", admin, reason="Oops")
    locked = confirm(admin_client, "lock_down_users", admin, reason="Oops")

    assert messages_of(deactivated) == ["Refused for root: You cannot deactivate your own account."]
    assert messages_of(locked) == [
        "Refused for root: You cannot deactivate your own account.",  # still unread
        "Refused for root: You cannot lock down your own account.",
    ]
    assert state(admin) == before
    assert events_about(admin) == trail


def test_the_change_page_offers_the_actions_and_comes_back(admin_client: Client) -> None:
    user = member("member", verified=False)

    page = admin_client.get(change_url(user)).content.decode()
    response = admin_client.post(
        CHANGELIST_URL,
        {"action": "mark_email_verified", "_selected_action": str(user.pk), "next": change_url(user)},
    )
    elsewhere = admin_client.post(
        CHANGELIST_URL,
        {"action": "reactivate_users", "_selected_action": str(user.pk), "next": "https://evil.example/"},
    )

    offered = re.findall(r'<input type="hidden" name="action" value="(\w+)">', page)
    # Already active, and no second factor to reset.
    assert offered == [action for action in ACTIONS if action not in ("reactivate_users", "reset_mfa")]
    assert response.status_code == 302
    assert response["Location"] == change_url(user)
    assert EmailAddress.objects.get(user=user).verified is True
    assert elsewhere["Location"] == CHANGELIST_URL


def test_a_forged_selection_is_a_message_not_an_error(admin_client: Client) -> None:
    response = admin_client.post(
        CHANGELIST_URL, {"action": "reactivate_users", "_selected_action": "not-a-uuid", "index": "0"}
    )

    assert response.status_code == 302
    assert response["Location"] == CHANGELIST_URL


# --- who may do what -------------------------------------------------------------------------------


def action_choices(response: Any) -> list[str]:
    return [name for name, _ in response.context["action_form"].fields["action"].choices if name]


def test_admins_have_every_action_and_may_add_and_delete_users(admin_client: Client) -> None:
    user = member("member")

    response = admin_client.get(CHANGELIST_URL)

    assert action_choices(response) == list(ACTIONS)  # no bulk delete: it writes no audit event
    assert admin_client.get(f"{CHANGELIST_URL}add/").status_code == 200
    assert admin_client.get(f"{change_url(user).removesuffix('change/')}delete/").status_code == 200


def test_a_moderator_sees_an_admin_read_only(moderator_client: Client, admin: User) -> None:
    before = state(admin)
    trail = events_about(admin)

    page = moderator_client.get(change_url(admin))
    posted = moderator_client.post(change_url(admin), {"username": "taken_over", "description": "Mine now"})

    assert page.status_code == 200
    content = page.content.decode()
    assert "root" in content
    assert 'name="_save"' not in content
    assert 'name="username"' not in content
    assert 'name="action"' not in content  # no action buttons on an admin
    assert posted.status_code == 403
    assert state(admin) == before
    assert events_about(admin) == trail


def test_a_moderator_changes_a_plain_users_profile_but_not_roles(
    moderator_client: Client, moderator: User
) -> None:
    user = member("member")
    page = moderator_client.get(change_url(user)).content.decode()
    data = change_form_data(moderator_client, user)

    response = moderator_client.post(
        change_url(user), {**data, "description": "Helps", "roles": [Role.ADMIN]}
    )

    assert 'name="username"' in page
    assert 'name="roles"' not in page
    assert response.status_code == 302
    user = User.objects.get(pk=user.pk)
    assert (user.description, user.roles, user.is_staff, user.is_superuser) == (
        "Helps",
        ["user"],
        False,
        False,
    )
    [updated] = events("accounts.user.updated")
    assert updated.actor_id == str(moderator.pk)
    assert events("accounts.user.roles_changed") == []


@pytest.mark.parametrize("action", ACTIONS)
def test_a_moderator_cannot_act_on_admins_or_moderators(
    moderator_client: Client, admin: User, action: str, django_capture_on_commit_callbacks: Any
) -> None:
    colleague = with_roles(member("colleague", verified=False), Role.MODERATOR)
    user_deactivate(user=colleague, reason="On leave")
    device_session(admin)
    before = state(admin, colleague)
    trail = events_about(admin, colleague)

    with django_capture_on_commit_callbacks(execute=True):
        response = run_action(moderator_client, action, admin, colleague)
        confirmed = confirm(moderator_client, action, admin, colleague, reason="Because")

    assert response.status_code == confirmed.status_code == 302
    [refused] = messages_of(response)
    assert refused.startswith("You may not ")
    assert refused.endswith(" colleague, root; nothing changed for them.")
    assert messages_of(confirmed) == [refused, refused]  # the first one is still unread
    assert state(admin, colleague) == before
    assert events_about(admin, colleague) == trail
    assert mail.outbox == []


def test_a_moderator_acts_on_the_plain_users_of_a_selection(
    moderator_client: Client, moderator: User, admin: User
) -> None:
    user = member("member")
    user_session = device_session(user)
    admin_session = device_session(admin)
    mark_reauthenticated(moderator_client)

    asked = run_action(moderator_client, "lock_down_users", user, admin)
    done = confirm(moderator_client, "lock_down_users", user, reason="Spam")

    assert asked.status_code == 200
    assert asked.context["users"] == [user]
    assert asked.context["refused"] == [admin]
    assert "You may not lock down these" in asked.content.decode()
    assert messages_of(asked) == ["You may not lock down root; nothing changed for them."]
    assert messages_of(done) == ["Locked down member."]
    user_session.refresh_from_db()
    admin_session.refresh_from_db()
    assert (user_session.revoked_at is not None, admin_session.revoked_at) == (True, None)
    assert User.objects.get(pk=admin.pk).is_active is True
    [locked] = events("accounts.user.locked_down")
    assert (locked.actor_id, locked.target_id) == (str(moderator.pk), str(user.pk))


def test_a_moderator_cannot_add_or_delete_users(moderator_client: Client) -> None:
    user = member("member")
    before = state(user)
    users_before = User.objects.count()
    delete_url = f"{change_url(user).removesuffix('change/')}delete/"

    listing = moderator_client.get(CHANGELIST_URL)
    responses = [
        moderator_client.get(f"{CHANGELIST_URL}add/"),
        moderator_client.post(
            f"{CHANGELIST_URL}add/",
            {
                "username": "sneaky",
                "email": "sneaky@example.com",
                "password1": DEFAULT_PASSWORD,
                "password2": DEFAULT_PASSWORD,
            },
        ),
        moderator_client.get(delete_url),
        moderator_client.post(delete_url, {"post": "yes"}),
    ]

    assert [response.status_code for response in responses] == [403, 403, 403, 403]
    assert action_choices(listing) == list(ACTIONS)
    assert "Add user" not in listing.content.decode()
    assert User.objects.count() == users_before
    assert state(user) == before


def test_a_plain_user_is_sent_to_the_admin_sign_in(user: User) -> None:
    target = member("member")
    before = state(target)
    client = signed_in_client(user)

    responses = [
        client.get(CHANGELIST_URL),
        client.get(change_url(target)),
        run_action(client, "sign_out_users_everywhere", target),
    ]

    assert [response.status_code for response in responses] == [302, 302, 302]
    assert responses[0]["Location"] == f"/admin/login/?next={CHANGELIST_URL}"
    assert state(target) == before


def test_staff_without_a_staff_role_are_refused(staff_user: User) -> None:
    target = member("member")
    before = state(target)
    totp_enrol(staff_user)  # else the MFA requirement sends them to enrolment before the admin
    client = signed_in_client(staff_user)

    responses = [
        client.get(CHANGELIST_URL),
        client.get(change_url(target)),
        run_action(client, "reactivate_users", target),
    ]

    assert [response.status_code for response in responses] == [403, 403, 403]
    assert state(target) == before


def test_allauth_records_are_listed_without_their_secrets(admin_client: Client, admin: User) -> None:
    from allauth.mfa.models import Authenticator

    authenticator = Authenticator.objects.get(user=admin, type=Authenticator.Type.TOTP)
    secret = authenticator.data["secret"]

    listing = admin_client.get("/admin/mfa/authenticator/")
    detail = admin_client.get(f"/admin/mfa/authenticator/{authenticator.pk}/change/")
    sessions = admin_client.get("/admin/usersessions/usersession/")

    assert (listing.status_code, detail.status_code, sessions.status_code) == (200, 200, 200)
    assert secret.encode() not in detail.content
    assert b'name="_save"' not in detail.content
    assert (
        admin_client.post(f"/admin/mfa/authenticator/{authenticator.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert Authenticator.objects.filter(pk=authenticator.pk).exists()


def test_sorting_by_last_sign_in_puts_those_who_never_signed_in_at_the_oldest_end(
    admin_client: Client, admin: User
) -> None:
    recent, older = member("recent"), member("older")
    User.objects.filter(pk=recent.pk).update(last_login=timezone.now())
    User.objects.filter(pk=older.pk).update(last_login=timezone.now() - timedelta(days=3))
    User.objects.filter(pk=admin.pk).update(last_login=None)
    column = UserAdmin.list_display.index("last_sign_in") + 1  # the action checkbox is column 0

    newest_first = listed(admin_client.get(CHANGELIST_URL, {"o": f"-{column}"}))
    oldest_first = listed(admin_client.get(CHANGELIST_URL, {"o": f"{column}"}))

    assert newest_first == ["recent", "older", admin.username]
    assert oldest_first == [admin.username, "older", "recent"]


# --- changing a user's e-mail address (docs/decisions/0017-staff-email-change.md) -------------------


def change_email_url(user: User) -> str:
    return f"{CHANGELIST_URL}{user.pk}/change-email/"


def addresses(user: User) -> list[tuple[str, bool, bool]]:
    return list(
        EmailAddress.objects.filter(user=user).order_by("pk").values_list("email", "primary", "verified")
    )


def test_an_admin_gives_a_user_a_verified_address_in_place_of_every_old_one(
    admin_client: Client, admin: User, django_capture_on_commit_callbacks: Any
) -> None:
    user = member("alice")
    EmailAddress.objects.create(user=user, email="alice.pending@example.com", primary=False, verified=False)
    reset_token = default_token_generator.make_token(user)  # a reset link sent before the change
    assert default_token_generator.check_token(user, reset_token)
    mark_reauthenticated(admin_client)
    page = admin_client.get(change_url(user)).content.decode()
    assert f'href="{change_email_url(user)}"' in page
    form = admin_client.get(change_email_url(user))
    assert form.status_code == 200
    assert "Now: <strong>alice@example.com</strong>" in form.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            change_email_url(user),
            {"email": " Alice.Smith@Example.COM ", "verified": "on", "reason": "Ticket 4711, ID checked"},
        )

    assert response.status_code == 302
    assert response["Location"] == change_url(user)
    assert messages_of(response) == [
        "Changed the e-mail address of alice to Alice.Smith@example.com (verified); the old address was told."
    ]
    user.refresh_from_db()
    assert user.email == "Alice.Smith@example.com"
    assert addresses(user) == [("alice.smith@example.com", True, True)]
    [notice] = mail.outbox  # no verification link: staff vouched for the address
    assert notice.to == ["alice@example.com"]
    assert notice.subject.endswith("Your account's e-mail address was changed")
    assert "from alice@example.com to Alice.Smith@example.com" in notice.body
    [changed] = events("accounts.user.email_changed")
    assert (changed.actor_id, changed.target_id, changed.changes, changed.metadata) == (
        str(admin.pk),
        str(user.pk),
        {"email": ["alice@example.com", "Alice.Smith@example.com"]},
        {"verified": True, "reason": "Ticket 4711, ID checked"},
    )
    assert not default_token_generator.check_token(User.objects.get(pk=user.pk), reset_token)
    signed_in = Client().post(
        "/accounts/login/", {"login": "ALICE.SMITH@example.com", "password": DEFAULT_PASSWORD}
    )
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/"
    old = Client().post("/accounts/login/", {"login": "alice@example.com", "password": DEFAULT_PASSWORD})
    assert old.status_code == 200  # the form again: no account has that address now


def test_an_unverified_new_address_is_sent_a_link_that_verifies_it(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    user = member("bob")
    mark_reauthenticated(admin_client)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change_email_url(user), {"email": "bob@new.example.org"})

    assert messages_of(response) == [
        "Changed the e-mail address of bob to bob@new.example.org (a verification link was sent to it); "
        "the old address was told."
    ]
    assert addresses(user) == [("bob@new.example.org", True, False)]
    assert sorted(message.to[0] for message in mail.outbox) == ["bob@example.com", "bob@new.example.org"]
    [link] = [message for message in mail.outbox if message.to == ["bob@new.example.org"]]
    key = re.search(r"/accounts/confirm-email/[^/\s]+/", str(link.body))
    assert key is not None
    browser = Client()
    assert browser.post(key.group(0)).status_code == 302
    assert addresses(user) == [("bob@new.example.org", True, True)]
    [changed] = events("accounts.user.email_changed")
    assert changed.metadata == {"verified": False}


@pytest.mark.parametrize(
    ("email", "error"),
    [
        ("not an address", "Enter a valid email address."),
        ("TAKEN@example.com", "A user with this e-mail address already exists."),
        ("second@example.com", "A user with this e-mail address already exists."),
        ("Carol@EXAMPLE.com", "This is already the user&#x27;s e-mail address."),
        ("", "This field is required."),
    ],
)
def test_a_refused_address_is_shown_on_the_form_and_nothing_changes(
    admin_client: Client, email: str, error: str, django_capture_on_commit_callbacks: Any
) -> None:
    user = member("carol")
    other = member("taken")
    EmailAddress.objects.create(user=other, email="second@example.com", primary=False, verified=False)
    mark_reauthenticated(admin_client)
    before = state(user, other)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(change_email_url(user), {"email": email, "verified": "on"})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert state(user, other) == before
    assert mail.outbox == []
    assert events("accounts.user.email_changed") == []


def test_changing_an_address_asks_to_re_authenticate_first(admin_client: Client) -> None:
    user = member("dave")
    before = state(user)
    url = change_email_url(user)

    shown = admin_client.get(url)
    posted = admin_client.post(url, {"email": "dave@new.example.org", "verified": "on"})

    for response in (shown, posted):
        assert response.status_code == 302
        assert response["Location"] == f"/accounts/reauthenticate/?next={url.replace('/', '%2F')}"
    assert state(user) == before
    mark_reauthenticated(admin_client)
    assert admin_client.get(url).status_code == 200


def test_who_may_change_an_address(admin_client: Client, admin: User, moderator_client: Client) -> None:
    plain = member("erin")
    mark_reauthenticated(admin_client)
    mark_reauthenticated(moderator_client)
    before = state(plain)

    assert moderator_client.get(change_email_url(plain)).status_code == 200  # a plain user
    assert f'href="{change_email_url(plain)}"' in moderator_client.get(change_url(plain)).content.decode()
    refused = [
        moderator_client.post(change_email_url(admin), {"email": "root@new.example.org"}),
        admin_client.post(change_email_url(admin), {"email": "root@new.example.org"}),  # their own
        admin_client.post(f"{CHANGELIST_URL}00000000-0000-0000-0000-000000000000/change-email/", {}),
    ]
    assert [response.status_code for response in refused] == [403, 403, 404]
    assert f'href="{change_email_url(admin)}"' not in admin_client.get(change_url(admin)).content.decode()
    assert state(plain) == before
    assert User.objects.get(pk=admin.pk).email == admin.email
    assert events("accounts.user.email_changed") == []


def test_the_service_refuses_the_staff_members_own_and_a_purged_account(admin: User) -> None:
    from accounts.services.moderation import user_change_email

    purged = member("frank")
    User.objects.filter(pk=purged.pk).update(purged_at=timezone.now())

    with pytest.raises(ValidationError) as own:
        user_change_email(user=admin, email="root@new.example.org", actor=admin)
    with pytest.raises(ValidationError) as gone:
        user_change_email(user=purged, email="frank@new.example.org", actor=admin)

    assert own.value.code == "cannot_target_self"
    assert gone.value.code == "account_purged"


def test_address_rows_are_read_only_in_allauths_admin(admin_client: Client) -> None:
    user = member("gina")
    [address] = EmailAddress.objects.filter(user=user)
    url = f"/admin/account/emailaddress/{address.pk}/change/"

    page = admin_client.get(url)
    edited = admin_client.post(url, {"user": str(user.pk), "email": "gina@evil.example", "primary": "on"})
    verified = admin_client.post(
        "/admin/account/emailaddress/", {"action": "make_verified", "_selected_action": [str(address.pk)]}
    )

    assert page.status_code == 200
    assert 'name="email"' not in page.content.decode()
    assert edited.status_code == 403
    assert verified.status_code == 200  # the list again: no such action
    assert addresses(user) == [("gina@example.com", True, True)]


def test_social_accounts_are_read_only_and_their_tokens_not_in_the_admin(admin_client: Client) -> None:
    from allauth.socialaccount.models import SocialApp, SocialToken

    user, other = member("hank"), member("ivy")
    social = SocialAccount.objects.create(user=user, provider="github", uid="hank-1", extra_data={"a": 1})
    app = SocialApp.objects.create(provider="github", name="GitHub", client_id="id", secret="s")
    token = SocialToken.objects.create(app=app, account=social, token="gho_secret_value")
    url = f"/admin/socialaccount/socialaccount/{social.pk}/change/"

    page = admin_client.get(url)
    moved = admin_client.post(url, {"user": str(other.pk), "provider": "github", "uid": "hank-1"})
    tokens = admin_client.get("/admin/socialaccount/socialtoken/")
    token_page = admin_client.get(f"/admin/socialaccount/socialtoken/{token.pk}/change/")

    assert page.status_code == 200
    assert 'name="user"' not in page.content.decode()
    assert "gho_secret_value" not in page.content.decode()
    assert moved.status_code == 403
    assert SocialAccount.objects.get(pk=social.pk).user_id == user.pk
    assert (tokens.status_code, token_page.status_code) == (404, 404)
