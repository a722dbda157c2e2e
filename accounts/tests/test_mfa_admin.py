"""The Django admin and second factors: staff sign in through allauth's pages with a second factor,
must have one before the admin opens, and step up before sensitive actions; the "Reset MFA" staff
tool (docs/decisions/0012-mfa-and-step-up.md)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.contrib.auth import SESSION_KEY
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client

from accounts.models import AccountLockout, DeviceSession, EmailCode, Role, User
from accounts.services import device_session_start
from accounts.services.moderation import user_set_roles
from accounts.tests.factories import (
    DEFAULT_PASSWORD,
    UserFactory,
    mark_reauthenticated,
    recovery_codes_enrol,
    sign_in_through_pages,
    totp_code,
    totp_enrol,
)
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ADMIN_URL = "/admin/"
ADMIN_LOGIN_URL = "/admin/login/"
LOGIN_URL = "/accounts/login/"
SECOND_FACTOR_URL = "/accounts/2fa/authenticate/"
EMAIL_CODE_URL = "/accounts/2fa/email-code/"
ENROLMENT_URL = "/accounts/2fa/"
ACTIVATE_TOTP_URL = "/accounts/2fa/totp/activate/"
REAUTHENTICATE_URL = "/accounts/reauthenticate/"
CHANGELIST_URL = "/admin/accounts/user/"
ADMIN_INDEX_TEXT = "Users, clients and settings"
ENROLMENT_MESSAGE = (
    "Your account must be protected by a second factor. Set up an authenticator app or a security key "
    "to continue."
)


# --- people --------------------------------------------------------------------------------------


def person(username: str, *roles: str, staff_flag: bool = False) -> User:
    """A user with a verified primary address (allauth's sign-in requires one) and `roles`;
    `staff_flag`: the `is_staff` flag without a staff role (set by hand, as Django's admin would)."""
    user = user_set_roles(user=UserFactory.create(username=username), roles=roles)
    if staff_flag:
        User.objects.filter(pk=user.pk).update(is_staff=True)
        user.refresh_from_db()
    EmailAddress.objects.create(user=user, email=user.email, primary=True, verified=True)
    return user


@pytest.fixture
def root() -> User:
    return person("root", Role.ADMIN)


@pytest.fixture
def root_secret(root: User) -> str:
    return totp_enrol(root)


@pytest.fixture
def mod() -> User:
    return person("mod", Role.MODERATOR)


@pytest.fixture
def bob() -> User:
    """A plain user with an authenticator app and recovery codes."""
    bob = person("bob")
    totp_enrol(bob)
    recovery_codes_enrol(bob)
    return bob


def signed_in_staff(user: User, *, reauthenticated: bool = False) -> Client:
    """A browser where `user` signed in with their password and a TOTP code (enrolled here)."""
    client = Client()
    response = sign_in_through_pages(client, user, code=totp_code(totp_enrol(user)), next_url=ADMIN_URL)
    assert response["Location"] == ADMIN_URL
    assert client.get(ADMIN_URL).status_code == 200  # shows (and so clears) "Successfully signed in"
    if reauthenticated:
        mark_reauthenticated(client)
    return client


# --- reading -------------------------------------------------------------------------------------


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def factor_types(user: User) -> list[str]:
    return sorted(Authenticator.objects.filter(user=user).values_list("type", flat=True))


def reauthenticate_url(back_to: str) -> str:
    return f"{REAUTHENTICATE_URL}?next={quote(back_to, safe='')}"


def change_url(user: User) -> str:
    return f"{CHANGELIST_URL}{user.pk}/change/"


def run_action(client: Client, action: str, *users: User, **data: str) -> Any:
    selected = [str(user.pk) for user in users]
    return client.post(CHANGELIST_URL, {"action": action, "_selected_action": selected, "index": "0", **data})


def confirm(client: Client, action: str, *users: User, **data: str) -> Any:
    selected = [str(user.pk) for user in users]
    return client.post(
        CHANGELIST_URL, {"action": action, "_selected_action": selected, "post": "yes", **data}
    )


# --- signing in to the admin ---------------------------------------------------------------------


def test_the_admin_login_is_allauths_sign_in(client: Client) -> None:
    response = client.get(ADMIN_URL, follow=True)

    assert response.redirect_chain == [
        (f"{ADMIN_LOGIN_URL}?next=/admin/", 302),
        (f"{LOGIN_URL}?next=%2Fadmin%2F", 302),
    ]
    assert response.status_code == 200
    assert 'name="login"' in response.content.decode()


def test_the_admins_own_password_form_is_never_reached(client: Client, root: User, root_secret: str) -> None:
    response = client.post(
        f"{ADMIN_LOGIN_URL}?next=/admin/", {"username": root.username, "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_URL}?next=%2Fadmin%2F"
    assert signed_in_user_id(client) is None
    assert client.get(ADMIN_URL)["Location"] == f"{ADMIN_LOGIN_URL}?next=/admin/"
    root.refresh_from_db()
    assert root.last_login is None
    assert not AccountLockout.objects.filter(user=root, failed_attempts__gt=0).exists()
    assert events("accounts.user.signed_in") == []


def test_staff_sign_in_to_the_admin_with_a_totp_code(client: Client, root: User, root_secret: str) -> None:
    password = sign_in_through_pages(client, root, next_url=ADMIN_URL)
    assert password["Location"] == SECOND_FACTOR_URL
    assert signed_in_user_id(client) is None
    assert client.get(ADMIN_URL)["Location"] == f"{ADMIN_LOGIN_URL}?next=/admin/"

    response = client.post(SECOND_FACTOR_URL, {"code": totp_code(root_secret)})

    assert response.status_code == 302
    assert response["Location"] == ADMIN_URL
    assert signed_in_user_id(client) == str(root.pk)
    index = client.get(ADMIN_URL)
    assert index.status_code == 200
    assert ADMIN_INDEX_TEXT in index.content.decode()
    assert client.get(CHANGELIST_URL).status_code == 200
    [authenticated] = events("accounts.mfa.authenticated")
    assert (authenticated.actor_id, authenticated.metadata["type"]) == (str(root.pk), "totp")
    [signed_in] = events("accounts.user.signed_in")
    assert signed_in.metadata == {"via": SECOND_FACTOR_URL}


def test_staff_sign_in_to_the_admin_with_a_recovery_code(
    client: Client, root: User, root_secret: str
) -> None:
    codes = recovery_codes_enrol(root)

    response = sign_in_through_pages(client, root, code=codes[0], next_url=ADMIN_URL)

    assert response["Location"] == ADMIN_URL
    assert client.get(ADMIN_URL).status_code == 200
    [authenticated] = events("accounts.mfa.authenticated")
    assert authenticated.metadata["type"] == "recovery_codes"
    assert len(events("accounts.mfa.recovery_code_used")) == 1


def test_a_wrong_code_keeps_staff_out_of_the_admin(client: Client, root: User, root_secret: str) -> None:
    sign_in_through_pages(client, root, next_url=ADMIN_URL)
    wrong = f"{(int(totp_code(root_secret)) + 1) % 10**6:06d}"

    response = client.post(SECOND_FACTOR_URL, {"code": wrong})

    assert response.status_code == 200
    assert [error.code for error in response.context["form"].errors.as_data()["code"]] == ["incorrect_code"]
    assert signed_in_user_id(client) is None
    assert client.get(ADMIN_URL)["Location"] == f"{ADMIN_LOGIN_URL}?next=/admin/"
    assert AccountLockout.objects.get(user=root).failed_attempts == 1


@pytest.mark.parametrize("kind", ["admin", "moderator", "staff flag"])
def test_staff_are_offered_no_code_by_email_and_get_none(
    client: Client, kind: str, django_capture_on_commit_callbacks: Any
) -> None:
    roles = {"admin": [Role.ADMIN], "moderator": [Role.MODERATOR], "staff flag": []}[kind]
    staff = person("staffer", *roles, staff_flag=kind == "staff flag")
    secret = totp_enrol(staff)
    sign_in_through_pages(client, staff, next_url=ADMIN_URL)

    page = client.get(SECOND_FACTOR_URL)
    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(EMAIL_CODE_URL, follow=True)

    assert "E-mail me a code instead" not in page.content.decode()
    assert EMAIL_CODE_URL not in page.content.decode()
    assert refused.redirect_chain == [(SECOND_FACTOR_URL, 302)]
    assert messages_of(refused) == ["A code by e-mail is not available for this account."]
    assert mail.outbox == []
    assert EmailCode.objects.count() == 0
    assert events("accounts.mfa.email_code_sent") == []
    assert signed_in_user_id(client) is None
    # The real factor still works.
    assert client.post(SECOND_FACTOR_URL, {"code": totp_code(secret)})["Location"] == ADMIN_URL


# --- enforcement ---------------------------------------------------------------------------------


def test_staff_without_a_second_factor_are_sent_to_enrolment_then_reach_the_admin(
    client: Client, mod: User, django_capture_on_commit_callbacks: Any
) -> None:
    signed_in = sign_in_through_pages(client, mod, next_url=ADMIN_URL)
    assert signed_in["Location"] == ADMIN_URL  # no factor to ask for: signed in with the password
    assert signed_in_user_id(client) == str(mod.pk)

    refused = [client.get(path) for path in (ADMIN_URL, CHANGELIST_URL, "/accounts/email/", "/")]

    assert [(response.status_code, response["Location"]) for response in refused] == [
        (302, ENROLMENT_URL)
    ] * 4
    enrolment_page = client.get(ENROLMENT_URL)
    assert enrolment_page.status_code == 200
    assert ENROLMENT_MESSAGE in messages_of(refused[0])
    [required] = events("accounts.mfa.enrolment_required")
    assert (required.actor_id, required.target_id) == (str(mod.pk), str(mod.pk))
    assert required.metadata == {"path": ADMIN_URL, "roles": [Role.MODERATOR, Role.USER]}
    assert events("admin.object.changed") == []

    # allauth asks for the password again before a factor is added, then shows the secret.
    assert client.get(ACTIVATE_TOTP_URL)["Location"] == reauthenticate_url(ACTIVATE_TOTP_URL)
    assert client.post(reauthenticate_url(ACTIVATE_TOTP_URL), {"password": DEFAULT_PASSWORD})["Location"] == (
        ACTIVATE_TOTP_URL
    )
    secret = client.get(ACTIVATE_TOTP_URL).context["form"].secret
    with django_capture_on_commit_callbacks(execute=True):
        activated = client.post(ACTIVATE_TOTP_URL, {"code": totp_code(secret)})
    assert activated.status_code == 302

    index = client.get(ADMIN_URL)

    assert index.status_code == 200
    assert ADMIN_INDEX_TEXT in index.content.decode()
    assert [event.metadata["type"] for event in events("accounts.mfa.enrolled")] == ["totp", "recovery_codes"]
    assert len(events("accounts.mfa.enrolment_required")) == 1


def test_the_enrolment_redirect_is_recorded_once_per_session(mod: User) -> None:
    first, second = Client(), Client()
    sign_in_through_pages(first, mod)
    sign_in_through_pages(second, mod)

    for _ in range(3):
        first.get(ADMIN_URL)
    second.get("/accounts/email/")

    required = events("accounts.mfa.enrolment_required")
    assert [event.metadata["path"] for event in required] == [ADMIN_URL, "/accounts/email/"]


def test_a_staff_flag_alone_requires_a_second_factor(client: Client) -> None:
    staff = person("flagged", staff_flag=True)
    client.force_login(staff)

    assert client.get(ADMIN_URL)["Location"] == ENROLMENT_URL
    [required] = events("accounts.mfa.enrolment_required")
    assert required.metadata == {"path": ADMIN_URL, "roles": [Role.USER]}


def test_the_mfa_pages_sign_out_and_the_api_are_not_redirected(client: Client, mod: User) -> None:
    client.force_login(mod)

    assert client.get(ENROLMENT_URL).status_code == 200
    assert client.get(ACTIVATE_TOTP_URL)["Location"].startswith(REAUTHENTICATE_URL)
    assert client.get(REAUTHENTICATE_URL).status_code == 200
    me = client.get("/api/v1/users/me/")
    assert me.status_code == 200
    assert me.json()["mfa_required"] is True
    assert client.get("/health/live").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert signed_in_user_id(client) is None
    client.force_login(mod)
    assert client.post("/admin/logout/").status_code == 200  # the admin's own sign-out too
    assert signed_in_user_id(client) is None
    assert events("accounts.mfa.enrolment_required") == []


@pytest.mark.parametrize("with_mfa", [False, True])
def test_a_plain_user_is_not_sent_to_enrolment_and_cannot_enter_the_admin(
    client: Client, with_mfa: bool
) -> None:
    plain = person("plain")
    code = totp_code(totp_enrol(plain)) if with_mfa else None

    response = sign_in_through_pages(client, plain, code=code)

    assert response["Location"] == "/"
    assert signed_in_user_id(client) == str(plain.pk)
    assert client.get("/accounts/email/").status_code == 200
    assert client.get(ADMIN_URL)["Location"] == f"{ADMIN_LOGIN_URL}?next=/admin/"
    assert client.get(f"{ADMIN_LOGIN_URL}?next=/admin/").status_code == 403
    assert client.get(CHANGELIST_URL).status_code == 302
    assert events("accounts.mfa.enrolment_required") == []


# --- what the admin shows of second factors ------------------------------------------------------


def test_the_admin_shows_whether_mfa_is_on_and_which_factors(root: User, bob: User) -> None:
    Authenticator.objects.create(user=bob, type=Authenticator.Type.WEBAUTHN, data={"name": "YubiKey"})
    plain = person("carol")
    client = signed_in_staff(root)

    changelist = client.get(CHANGELIST_URL)
    change_page = client.get(change_url(bob))
    plain_page = client.get(change_url(plain))

    mfa_column = {user.username: user.has_mfa for user in changelist.context["cl"].result_list}
    assert mfa_column == {"bob": True, "carol": False, "root": True}
    html = change_page.content.decode()
    assert "authenticator app (TOTP) x1, passkey or security key x1, recovery codes" in html
    [inline] = [
        inline
        for inline in change_page.context["inline_admin_formsets"]
        if inline.opts.model is Authenticator
    ]
    assert [inline.opts.factor(form.instance) for form in inline.formset.forms] == [
        "recovery codes",
        "authenticator app (TOTP)",
        "passkey or security key",
    ]
    cells = re.findall(r'<td class="field-factor">\s*<p>([^<]*)</p>', html)
    assert cells == ["recovery codes", "authenticator app (TOTP)", "passkey or security key"]
    totp = Authenticator.objects.get(user=bob, type=Authenticator.Type.TOTP)
    assert totp.data["secret"] not in html  # the factor's data stays out of the page
    assert "Second factors (MFA)" in html
    assert '<div class="readonly">none</div>' in plain_page.content.decode()  # second factors: none


# --- the "Reset MFA" staff tool ------------------------------------------------------------------


def test_reset_mfa_asks_to_confirm_then_removes_every_factor_and_signs_the_user_out(
    root: User, bob: User
) -> None:
    bob_browser = Client()
    bob_browser.force_login(bob)
    assert bob_browser.get("/accounts/email/").status_code == 200
    device, _ = device_session_start(user=bob, user_agent="okhttp/4.12", ip_address="203.0.113.7")
    client = signed_in_staff(root, reauthenticated=True)

    confirmation = run_action(client, "reset_mfa", bob)

    assert confirmation.status_code == 200
    assert "Reset MFA of selected users" in confirmation.content.decode()
    assert factor_types(bob) == ["recovery_codes", "totp"]

    response = confirm(client, "reset_mfa", bob)

    assert response.status_code == 302
    assert messages_of(response) == ["Reset the MFA of bob."]
    assert factor_types(bob) == []
    device.refresh_from_db()
    assert device.revoked_at is not None
    assert device.revoke_reason == DeviceSession.RevokeReason.STAFF
    assert bob_browser.get("/accounts/email/")["Location"] == "/accounts/login/?next=/accounts/email/"
    [reset] = events("accounts.mfa.reset")
    assert (reset.actor_id, reset.target_id, reset.outcome) == (str(root.pk), str(bob.pk), "success")
    assert reset.metadata["removed"] == ["recovery_codes", "totp"]
    # bob signs in with the password alone again (a plain user need not enrol).
    assert sign_in_through_pages(Client(), bob)["Location"] == "/"


def test_reset_mfa_from_the_change_page_comes_back_to_it(root: User, bob: User) -> None:
    client = signed_in_staff(root, reauthenticated=True)
    page = client.get(change_url(bob))
    assert [action.name for action in page.context["user_actions"]][-1] == "reset_mfa"
    assert "Reset MFA…" in page.content.decode()

    response = confirm(client, "reset_mfa", bob, next=change_url(bob))

    assert response.status_code == 302
    assert response["Location"] == change_url(bob)
    assert factor_types(bob) == []
    assert "reset_mfa" not in [action.name for action in client.get(change_url(bob)).context["user_actions"]]


@pytest.mark.parametrize("seconds_ago", [None, 601], ids=["never", "too-long-ago"])
def test_reset_mfa_without_a_recent_re_authentication_changes_nothing(
    root: User, bob: User, seconds_ago: int | None
) -> None:
    client = signed_in_staff(root)
    if seconds_ago is not None:
        mark_reauthenticated(client, seconds_ago=seconds_ago)

    from_menu = confirm(client, "reset_mfa", bob)
    from_page = confirm(client, "reset_mfa", bob, next=change_url(bob))

    assert from_menu.status_code == from_page.status_code == 302
    assert from_menu["Location"] == reauthenticate_url(CHANGELIST_URL)
    assert from_page["Location"] == reauthenticate_url(change_url(bob))
    assert messages_of(from_menu) == [
        "Reset MFA of selected users (remove every second factor, sign them out) needs you to confirm "
        "who you are again. Nothing changed yet: re-authenticate, then choose the action again."
    ]
    assert factor_types(bob) == ["recovery_codes", "totp"]
    assert events("accounts.mfa.reset") == []


def test_after_re_authenticating_the_reset_works(root: User, bob: User) -> None:
    client = signed_in_staff(root)
    refused = confirm(client, "reset_mfa", bob, next=change_url(bob))

    back = client.post(refused["Location"], {"password": DEFAULT_PASSWORD})

    assert back.status_code == 302
    assert back["Location"] == change_url(bob)
    assert factor_types(bob) == ["recovery_codes", "totp"]  # nothing replayed behind their back
    assert confirm(client, "reset_mfa", bob, next=change_url(bob))["Location"] == change_url(bob)
    assert factor_types(bob) == []
    assert len(events("accounts.mfa.reset")) == 1


def test_a_moderator_resets_a_plain_users_mfa_but_not_an_admins(
    mod: User, root: User, root_secret: str, bob: User
) -> None:
    client = signed_in_staff(mod, reauthenticated=True)
    root_factors = factor_types(root)

    refused = confirm(client, "reset_mfa", root)
    assert client.get(CHANGELIST_URL).status_code == 200  # shows the message
    mixed = confirm(client, "reset_mfa", root, bob)

    assert messages_of(refused) == ["You may not reset the MFA of root; nothing changed for them."]
    assert messages_of(mixed) == [
        "You may not reset the MFA of root; nothing changed for them.",
        "Reset the MFA of bob.",
    ]
    assert factor_types(root) == root_factors == ["totp"]
    assert factor_types(bob) == []
    [reset] = events("accounts.mfa.reset")
    assert (reset.actor_id, reset.target_id) == (str(mod.pk), str(bob.pk))
    assert "reset_mfa" not in [action.name for action in client.get(change_url(root)).context["user_actions"]]


def test_reset_mfa_of_a_user_without_factors_is_nothing_to_do(root: User) -> None:
    carol = person("carol")
    client = signed_in_staff(root, reauthenticated=True)

    response = confirm(client, "reset_mfa", carol)

    assert messages_of(response) == ["Nothing to do for carol: no second factor to reset."]
    assert events("accounts.mfa.reset") == []


def test_after_a_reset_a_moderator_must_enrol_again(root: User, mod: User) -> None:
    moderator_browser = signed_in_staff(mod)
    assert moderator_browser.get(ADMIN_URL).status_code == 200
    client = signed_in_staff(root, reauthenticated=True)

    confirm(client, "reset_mfa", mod)

    assert factor_types(mod) == []
    assert moderator_browser.get(ADMIN_URL)["Location"] == f"{ADMIN_LOGIN_URL}?next=/admin/"  # signed out
    fresh = Client()
    assert sign_in_through_pages(fresh, mod, next_url=ADMIN_URL)["Location"] == ADMIN_URL
    assert fresh.get(ADMIN_URL)["Location"] == ENROLMENT_URL


# --- step-up for lock-down and role changes ------------------------------------------------------


def test_lock_down_without_a_recent_re_authentication_changes_nothing(root: User, bob: User) -> None:
    client = signed_in_staff(root)

    response = confirm(client, "lock_down_users", bob, reason="Stolen laptop")

    assert response.status_code == 302
    assert response["Location"] == reauthenticate_url(CHANGELIST_URL)
    bob.refresh_from_db()
    assert bob.is_active is True
    assert events("accounts.user.locked_down") == []

    client.post(response["Location"], {"password": DEFAULT_PASSWORD})
    assert confirm(client, "lock_down_users", bob, reason="Stolen laptop").status_code == 302
    bob.refresh_from_db()
    assert bob.is_active is False
    [locked] = events("accounts.user.locked_down")
    assert (locked.actor_id, locked.target_id) == (str(root.pk), str(bob.pk))


def change_form(client: Client, user: User, **changes: Any) -> dict[str, Any]:
    from accounts.tests.test_admin_users import change_form_data

    return {**change_form_data(client, user), **changes}


def test_changing_roles_without_a_recent_re_authentication_changes_nothing(root: User, bob: User) -> None:
    client = signed_in_staff(root)
    data = change_form(client, bob, roles=[Role.USER, Role.MODERATOR], description="Trusted helper")
    before = (list(User.objects.filter(pk=bob.pk).values()), bob.roles)
    audit_count = AuditEvent.objects.count()

    response = client.post(change_url(bob), data)

    assert response.status_code == 302
    assert response["Location"] == reauthenticate_url(change_url(bob))
    assert messages_of(response) == [
        "Changing roles needs you to confirm who you are again. Nothing changed yet: re-authenticate, "
        "then make the change again."
    ]
    fresh = User.objects.get(pk=bob.pk)
    assert (list(User.objects.filter(pk=bob.pk).values()), fresh.roles) == before
    assert AuditEvent.objects.count() == audit_count


def test_changing_roles_after_re_authenticating_works(root: User, bob: User) -> None:
    client = signed_in_staff(root)
    client.post(reauthenticate_url(change_url(bob)), {"password": DEFAULT_PASSWORD})
    data = change_form(client, bob, roles=[Role.USER, Role.MODERATOR])

    response = client.post(change_url(bob), data)

    assert response.status_code == 302
    assert response["Location"] == CHANGELIST_URL
    assert User.objects.get(pk=bob.pk).roles == [Role.MODERATOR, Role.USER]
    [changed] = [event for event in events("accounts.user.roles_changed") if event.actor_id]
    assert (changed.actor_id, changed.target_id) == (str(root.pk), str(bob.pk))


def test_profile_changes_need_no_re_authentication(root: User, bob: User) -> None:
    client = signed_in_staff(root)
    data = change_form(client, bob, description="Writes the newsletter")

    response = client.post(change_url(bob), data)

    assert response.status_code == 302
    assert response["Location"] == CHANGELIST_URL
    assert User.objects.get(pk=bob.pk).description == "Writes the newsletter"
